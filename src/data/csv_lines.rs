//! Line numbers of a CSV file's records, for messages that name where a bad cell is (the
//! series files and the speech manifests).

/// The lines of a CSV file's bytes, for messages that name a record's line: the reader's
/// positions start at the blank lines it skips before a record, and its line count leaves
/// them out. A line ends at "\n", "\r\n" or a lone "\r". Built once per file (finding a
/// line is then a binary search, not a scan from the start).
pub(crate) struct Lines<'a> {
    bytes: &'a [u8],
    /// Byte offsets of the line breaks, in order.
    breaks: Vec<usize>,
}

impl<'a> Lines<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        let breaks = bytes
            .iter()
            .enumerate()
            .filter(|&(k, &c)| c == b'\n' || (c == b'\r' && bytes.get(k + 1) != Some(&b'\n')))
            .map(|(k, _)| k)
            .collect();
        Lines { bytes, breaks }
    }

    /// The 1-based line on which the record read from byte `at` starts.
    pub(crate) fn line_of(&self, at: u64) -> u64 {
        let mut at = (at as usize).min(self.bytes.len());
        while matches!(self.bytes.get(at), Some(b'\n' | b'\r')) {
            at += 1;
        }
        1 + self.breaks.partition_point(|&k| k < at) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_count_every_kind_of_line_break_and_skip_blank_lines() {
        let text = b"h\n1\n\n2\r\n3\r4\n";
        let lines = Lines::new(text);
        // (byte a record starts at, or the blank line before it, → its 1-based line)
        for (at, line) in [(0, 1), (2, 2), (4, 4), (5, 4), (8, 5), (10, 6), (99, 7)] {
            assert_eq!(lines.line_of(at), line, "byte {at}");
        }
    }
}
