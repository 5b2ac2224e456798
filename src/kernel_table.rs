//! Checks of the whole kernel table: every layer's kernels, their WGSL sources against the
//! Rust mirrors of their structs, their bindings against the device limit every device
//! offers, and that each compiles on the test adapter.

use crate::gpu::{KernelDef, StructLayout, WgslStruct, MAX_STORAGE_BINDINGS};

/// Every kernel of every layer.
fn all() -> Vec<&'static KernelDef> {
    [
        crate::gpu::KERNELS,
        crate::model::kernels::KERNELS,
        crate::ctc::gpu::KERNELS,
        crate::train::loss::KERNELS,
        crate::train::optim::KERNELS,
    ]
    .concat()
}

/// The (name, type) fields of `struct name { ... }` in a WGSL source, in order.
fn wgsl_fields(src: &str, name: &str) -> Vec<(String, String)> {
    let start = src
        .find(&format!("struct {name} {{"))
        .unwrap_or_else(|| panic!("no struct {name} in the source"));
    let body = &src[start..][..src[start..].find('}').expect("the struct's end")];
    let body = &body[body.find('{').expect("the struct's start") + 1..];
    body.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .flat_map(|l| l.split(','))
        .filter(|f| !f.trim().is_empty())
        .map(|f| {
            let (n, t) = f.split_once(':').expect("a field `name: type`");
            (n.trim().to_string(), t.trim().to_string())
        })
        .collect()
}

fn check_mirror(what: &str, src: &str, layout: &StructLayout) {
    let fields = wgsl_fields(src, layout.name);
    let mirror: Vec<(String, String)> = layout
        .fields
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    assert_eq!(
        fields, mirror,
        "{what}: struct {} in WGSL vs its Rust mirror",
        layout.name
    );
    assert_eq!(
        layout.size,
        4 * fields.len() as u64,
        "{what}: {}",
        layout.name
    );
}

#[test]
fn every_uniform_mirror_has_the_wgsl_structs_field_names_order_and_size() {
    for def in all() {
        let src = def.full_source();
        let start = src.find("var<uniform> p: ").expect("a uniform named p") + 16;
        let name: String = src[start..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        assert_eq!(name, def.uniform.name, "{}", def.entry);
        check_mirror(def.entry, &src, &def.uniform);
        // The uniform address space takes sizes in multiples of 16 bytes.
        assert_eq!(def.uniform.size % 16, 0, "{}", def.entry);
    }
    // The optimizer's hyperparameters are a storage struct with a mirror too.
    check_mirror(
        "update",
        &crate::train::optim::UPDATE.full_source(),
        &StructLayout::of::<crate::train::optim::Hyper>(),
    );
}

#[test]
fn a_changed_field_name_or_order_is_caught() {
    let src = "struct S {\n    a: u32, b: u32, // note\n    c: f32,\n}";
    assert_eq!(
        wgsl_fields(src, "S"),
        [("a", "u32"), ("b", "u32"), ("c", "f32")].map(|(n, t)| (n.into(), t.into()))
    );
    crate::gpu::wgsl_struct! {
        struct Swapped = "S" { b: u32, a: u32, c: f32, }
    }
    let r = std::panic::catch_unwind(|| check_mirror("test", src, &StructLayout::of::<Swapped>()));
    assert!(r.is_err(), "a swapped pair of fields must fail");
    assert_eq!(Swapped::FIELDS[0].0, "b");
}

#[test]
fn every_entry_point_is_in_its_source_with_its_bindings_within_webgpus_limit() {
    let mut seen = std::collections::HashSet::new();
    for def in all() {
        assert!(
            seen.insert((def.entry, def.immediate_size)),
            "{} is in the table twice",
            def.entry
        );
        assert!(
            def.source.contains(&format!("fn {}(", def.entry)),
            "{}",
            def.entry
        );
        let bindings = def.full_source().matches("@binding(").count();
        assert_eq!(bindings, def.bindings.len() + 1, "{}", def.entry);
        assert!(
            def.bindings.len() as u32 <= MAX_STORAGE_BINDINGS,
            "{}",
            def.entry
        );
    }
}

#[test]
fn every_kernel_compiles_on_the_test_adapter() {
    let gpu = crate::gpu::Gpu::new().unwrap_or_else(|e| {
        panic!("the kernel test needs a wgpu adapter (run .ci/install-adapter): {e}")
    });
    for def in all() {
        if gpu.kernels().has(def) {
            gpu.kernels()
                .bind_group_layout(&gpu, def)
                .unwrap_or_else(|e| panic!("{}: {e}", def.entry));
        }
    }
}
