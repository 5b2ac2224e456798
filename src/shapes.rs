//! Shape and length checks shared by the reference, the GPU model and the trainer. A leaf:
//! it depends on nothing but the error type.

use crate::error::{Error, Result};

/// Values a shape holds; saturates instead of overflowing on absurd shapes.
pub(crate) fn numel(shape: &[usize]) -> usize {
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .unwrap_or(usize::MAX)
}

/// Checks that `got` equals `expected`, naming the tensor otherwise.
pub(crate) fn check_shape(what: &'static str, got: &[usize], expected: &[usize]) -> Result<()> {
    if got != expected {
        return Err(Error::Shape {
            what,
            expected: format!("{expected:?}"),
            got: got.to_vec(),
        });
    }
    Ok(())
}

/// Checks that host data of `got` values fills `shape`.
pub(crate) fn check_len(what: &'static str, shape: &[usize], got: usize) -> Result<()> {
    let expected = numel(shape);
    if expected != got {
        return Err(Error::DataLength {
            what,
            shape: shape.to_vec(),
            expected,
            got,
        });
    }
    Ok(())
}

/// Checks per-row lengths: B of them, each in 1..=T.
pub fn check_lengths(lengths: &[usize], t: usize, b: usize) -> Result<()> {
    check_shape("lengths", &[lengths.len()], &[b])?;
    match lengths.iter().position(|&l| l == 0 || l > t) {
        Some(r) => Err(Error::BadLength {
            row: r,
            length: lengths[r],
            steps: t,
        }),
        None => Ok(()),
    }
}

pub(crate) fn nonzero(what: &'static str, v: usize) -> Result<()> {
    if v == 0 {
        Err(Error::ZeroSize { what })
    } else {
        Ok(())
    }
}
