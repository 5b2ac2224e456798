// The first recurrence iteration of a dispatch, from the uniform (see first_immediate.wgsl).
fn first_iteration() -> u32 {
    return p.first;
}
