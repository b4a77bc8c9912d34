//! Sizing: a valid site blueprint with fuzzed numbers (GPUs, system, fabric generation,
//! nodes per unit, blocking factor, tenants' grants, PUE), validated, and when accepted
//! planned and built into its objects, which must pass the operator's own validation.
#![no_main]

use arbitrary::Arbitrary;
use fabbrica_crds::v1alpha1::GpuSystem;
use fabbrica_site::{FabricGeneration, SiteBlueprint, TenantSpec};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Site {
    gpus: u32,
    system: u8,
    xdr: bool,
    nodes_per_unit: Option<u32>,
    blocking_factor: u32,
    tenants: Vec<(u32, u8)>,
    pue: f64,
}

fuzz_target!(|site: Site| {
    let mut blueprint: SiteBlueprint = fabbrica::blueprint_file::parse(include_str!(
        "../../tests/fixtures/bad-input/base/site.yaml"
    ))
    .expect("the base blueprint");
    let spec = &mut blueprint.spec;
    spec.compute.gpus = site.gpus;
    spec.compute.system = [
        GpuSystem::DgxH100,
        GpuSystem::DgxH200,
        GpuSystem::DgxB200,
        GpuSystem::Gb200Nvl72,
    ][usize::from(site.system % 4)];
    spec.compute.nodes_per_scalable_unit = site.nodes_per_unit;
    spec.compute_fabric.generation = if site.xdr {
        FabricGeneration::Xdr
    } else {
        FabricGeneration::Ndr
    };
    spec.compute_fabric.blocking_factor = site.blocking_factor;
    spec.facility.pue = site.pue;
    let template = spec.tenants[0].clone();
    spec.tenants = site
        .tenants
        .iter()
        .take(300)
        .enumerate()
        .map(|(i, &(gpus, notebook_gpus))| {
            let mut tenant: TenantSpec = template.clone();
            tenant.name = format!("t{i}");
            tenant.gpus = gpus;
            if let Some(notebook) = &mut tenant.notebook {
                notebook.gpus = u32::from(notebook_gpus);
            }
            tenant
        })
        .collect();
    let Ok(valid) = fabbrica_site::validate(&blueprint) else {
        return;
    };
    let plan = fabbrica_site::plan(&valid);
    let objects = fabbrica_site::build(&valid, &plan);
    // What validation accepted, the operator's rules accept too.
    if let Err(refused) = objects.check() {
        panic!("a valid blueprint built objects the operator refuses: {refused}");
    }
});
