// The first recurrence iteration of a dispatch from an immediate (Features::IMMEDIATES):
// the stepwise path then binds one uniform for all its steps and sets only this per step.
var<immediate> first_immediate: u32;

fn first_iteration() -> u32 {
    return first_immediate;
}
