//! The shape of a rail-optimized fat tree: how many leaves, spines and cores a
//! number of nodes needs, and which port of which switch every link uses.
//!
//! The rules reproduce the NVIDIA DGX SuperPOD reference architectures' tables
//! (the tests in `tests.rs` check them figure by figure):
//! - one leaf per rail per scalable unit (SU); a leaf has one downlink per node of
//!   its unit and, non-blocking, as many uplinks;
//! - two tiers: the spine count is the smallest divisor of the leaf uplinks that
//!   has ports for them all, so every leaf has the same number of links to every
//!   spine (DGX H100 RA table 4: 3 SUs, 24 leaves, 16 spines rather than 12);
//! - three tiers, once the leaves outnumber a spine's ports: spine groups of
//!   radix/2 leaves, one spine per leaf uplink in each group; spine `i` of every
//!   group joins core plane `i`, and each plane has the smallest divisor of the
//!   spine uplinks that has ports for them all (DGX B200 RA, "Larger DGX SuperPOD
//!   component counts": 16 SUs, 128 leaves, 128 spines, 64 cores).

use serde::Serialize;

/// A sized fat tree. Leaves are numbered unit by unit, rail by rail
/// (`leaf = unit * rails + rail`), all from zero.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FatTree {
    /// Switch ports.
    pub radix: u32,
    /// Rails per node: one leaf per rail per unit.
    pub rails: u32,
    /// Nodes cabled to the tree.
    pub nodes: u32,
    /// Nodes per scalable unit (and downlinks per leaf).
    pub nodes_per_unit: u32,
    /// Scalable units, the last possibly partial.
    pub units: u32,
    /// Uplinks per leaf.
    pub leaf_uplinks: u32,
    /// 1 (a single leaf), 2 (leaf-spine) or 3 (leaf-spine-core).
    pub tiers: u32,
    /// Spine groups: 1 in two tiers.
    pub spine_groups: u32,
    /// Spines per group.
    pub spines_per_group: u32,
    /// Links between a leaf and each spine it reaches.
    pub leaf_spine_links: u32,
    /// Core switches per plane (three tiers only).
    pub cores_per_plane: u32,
    /// Links between a spine and each core of its plane.
    pub spine_core_links: u32,
}

/// Why nodes do not fit a tree of three tiers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooLarge {
    /// The most nodes three tiers of this switch connect with this unit size and rail count.
    pub max_nodes: u64,
}

/// The smallest divisor of `n` that is at least `at_least`.
fn divisor_at_least(n: u32, at_least: u32) -> Option<u32> {
    (at_least.max(1)..=n).find(|d| n.is_multiple_of(*d))
}

impl FatTree {
    /// Sizes the tree. `nodes_per_unit` must leave room for the uplinks on a leaf
    /// (`nodes_per_unit + ceil(nodes_per_unit / blocking) <= radix`).
    pub fn size(
        nodes: u32,
        nodes_per_unit: u32,
        rails: u32,
        radix: u32,
        blocking: u32,
    ) -> Result<Self, TooLarge> {
        let units = nodes.div_ceil(nodes_per_unit.max(1)).max(1);
        let uplinks = nodes_per_unit.div_ceil(blocking.max(1));
        let half = radix / 2;
        let max_nodes = u64::from(radix) * u64::from(half) / u64::from(rails.max(1))
            * u64::from(nodes_per_unit);
        // Beyond u32 switches the tree is far past three tiers anyway.
        let too_large = TooLarge { max_nodes };
        let leaves = units.checked_mul(rails).ok_or(too_large)?;
        let mut tree = Self {
            radix,
            rails,
            nodes,
            nodes_per_unit,
            units,
            leaf_uplinks: uplinks,
            tiers: 1,
            spine_groups: 0,
            spines_per_group: 0,
            leaf_spine_links: 0,
            cores_per_plane: 0,
            spine_core_links: 0,
        };
        if leaves == 1 {
            tree.leaf_uplinks = 0;
            return Ok(tree);
        }
        let needed = leaves
            .checked_mul(uplinks)
            .ok_or(too_large)?
            .div_ceil(radix.max(1));
        if let Some(spines) = divisor_at_least(uplinks, needed) {
            tree.tiers = 2;
            tree.spine_groups = 1;
            tree.spines_per_group = spines;
            tree.leaf_spine_links = uplinks / spines;
            return Ok(tree);
        }
        let groups = leaves.div_ceil(half.max(1));
        let per_plane = divisor_at_least(
            half,
            groups
                .checked_mul(half)
                .ok_or(too_large)?
                .div_ceil(radix.max(1)),
        )
        .ok_or(too_large)?;
        tree.tiers = 3;
        tree.spine_groups = groups;
        tree.spines_per_group = uplinks;
        tree.leaf_spine_links = 1;
        tree.cores_per_plane = per_plane;
        tree.spine_core_links = half / per_plane;
        Ok(tree)
    }

    /// Leaf switches.
    pub fn leaves(&self) -> u32 {
        self.units * self.rails
    }

    /// Spine switches.
    pub fn spines(&self) -> u32 {
        self.spine_groups * self.spines_per_group
    }

    /// Core switches: one plane per spine position in a group.
    pub fn cores(&self) -> u32 {
        if self.tiers == 3 {
            self.spines_per_group * self.cores_per_plane
        } else {
            0
        }
    }

    /// Nodes cabled to the leaves of a unit.
    pub fn nodes_in_unit(&self, unit: u32) -> u32 {
        self.nodes
            .saturating_sub(unit * self.nodes_per_unit)
            .min(self.nodes_per_unit)
    }

    /// Leaves in a spine group (three tiers), or all leaves (two tiers).
    pub fn leaves_in_group(&self, group: u32) -> u32 {
        if self.tiers == 3 {
            let half = self.radix / 2;
            self.leaves().saturating_sub(group * half).min(half)
        } else {
            self.leaves()
        }
    }

    /// Uplinks of each spine: towards the cores in three tiers, none otherwise.
    pub fn spine_uplinks(&self) -> u32 {
        if self.tiers == 3 { self.radix / 2 } else { 0 }
    }

    /// Node-to-leaf cables: one per node and rail.
    pub fn node_leaf_cables(&self) -> u64 {
        u64::from(self.nodes) * u64::from(self.rails)
    }

    /// Leaf-to-spine cables; partial units are cabled as full ones.
    pub fn leaf_spine_cables(&self) -> u64 {
        if self.tiers < 2 {
            0
        } else {
            u64::from(self.leaves()) * u64::from(self.leaf_uplinks)
        }
    }

    /// Spine-to-core cables.
    pub fn spine_core_cables(&self) -> u64 {
        u64::from(self.spines()) * u64::from(self.spine_uplinks())
    }

    /// Transceiver cages in use over all switches, `ports_per_cage` ports to a cage.
    pub fn switch_transceivers(&self, ports_per_cage: u32) -> u64 {
        let cages = |ports: u32| u64::from(ports.div_ceil(ports_per_cage));
        let mut total = 0;
        for unit in 0..self.units {
            total += u64::from(self.rails)
                * (cages(self.nodes_in_unit(unit)) + cages(self.leaf_uplinks));
        }
        match self.tiers {
            2 => total += u64::from(self.spines()) * cages(self.leaves() * self.leaf_spine_links),
            3 => {
                for group in 0..self.spine_groups {
                    total += u64::from(self.spines_per_group)
                        * (cages(self.leaves_in_group(group)) + cages(self.spine_uplinks()));
                }
                total += u64::from(self.cores()) * cages(self.spine_groups * self.spine_core_links);
            }
            _ => {}
        }
        total
    }

    /// The spine (group, index) and spine port (from zero) a leaf uplink lands on.
    pub fn leaf_uplink(&self, leaf: u32, uplink: u32) -> (u32, u32, u32) {
        if self.tiers == 3 {
            let half = self.radix / 2;
            (leaf / half, uplink, leaf % half)
        } else {
            let spine = uplink / self.leaf_spine_links;
            (
                0,
                spine,
                leaf * self.leaf_spine_links + uplink % self.leaf_spine_links,
            )
        }
    }

    /// The core (plane, index) and core port (from zero) a spine uplink lands on.
    pub fn spine_uplink(&self, group: u32, spine: u32, uplink: u32) -> (u32, u32, u32) {
        let core = uplink / self.spine_core_links;
        (
            spine,
            core,
            group * self.spine_core_links + uplink % self.spine_core_links,
        )
    }
}
