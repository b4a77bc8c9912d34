//! The flags that describe a site on the command line, flattened into `plan` and
//! `blueprint new`.

use fabbrica_crds::v1alpha1::{GpuSystem, SiteTier};
use fabbrica_site::{FabricGeneration, NewSite, SiteBlueprint, new_site};

/// A site described on the command line.
#[derive(Debug, clap::Args)]
pub struct SiteFlags {
    /// GPUs the site targets; rounded up to whole nodes.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub gpus: Option<u32>,
    /// GPU system from the catalog.
    #[arg(long, value_parser = parse_system, default_value = "dgx-h100")]
    pub system: GpuSystem,
    /// Compute fabric generation: ndr (400 Gb/s, 64-port switches) or xdr (800 Gb/s, 144-port);
    /// by default ndr for an AI Factory and xdr for a Gigafactory.
    #[arg(long, value_enum)]
    pub fabric: Option<FabricGeneration>,
    /// Site tier.
    #[arg(long, value_enum, default_value_t = SiteTier::AiFactory)]
    pub tier: SiteTier,
    /// Site name, a DNS label.
    #[arg(long, value_name = "NAME", default_value = "site")]
    pub site: String,
    /// ISO 3166-1 alpha-2 country code of the site.
    #[arg(long, default_value = "IT")]
    pub country: String,
}

impl SiteFlags {
    /// The blueprint these flags describe with `gpus`, with a tier's defaults for the rest.
    pub fn blueprint(&self, gpus: u32) -> SiteBlueprint {
        new_site(&NewSite {
            name: self.site.clone(),
            country: self.country.clone(),
            tier: self.tier,
            gpus,
            system: self.system,
            generation: self.fabric,
        })
    }
}

/// A GPU system by its catalog identifier, with the valid ones when it is none.
pub fn parse_system(id: &str) -> Result<GpuSystem, String> {
    GpuSystem::from_id(id).ok_or_else(|| {
        let valid: Vec<_> = GpuSystem::ALL.iter().map(|s| s.id()).collect();
        format!("unknown GPU system {id:?}; valid: {}", valid.join(", "))
    })
}
