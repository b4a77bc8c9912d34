//! Names of the fabric's devices and every cable between them, in a fixed
//! order: node to leaf, leaf to spine, spine to core. Pure and streaming, so
//! a Gigafactory's hundreds of thousands of cables never sit in memory at once.

use serde::Serialize;

use crate::fat_tree::FatTree;

/// Which level of the tree a cable belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CableKind {
    /// A node's rail port to its unit's leaf for that rail.
    NodeLeaf,
    /// A leaf uplink to a spine.
    LeafSpine,
    /// A spine uplink to a core.
    SpineCore,
}

impl CableKind {
    /// The spelling in `cabling.csv`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NodeLeaf => "node-leaf",
            Self::LeafSpine => "leaf-spine",
            Self::SpineCore => "spine-core",
        }
    }
}

/// One cable, ports numbered from 1 as printed on the switches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cable {
    /// Level of the tree.
    pub kind: CableKind,
    /// Device at the lower end (node or switch).
    pub from: String,
    /// Port at the lower end (`rail3`, or a switch port number).
    pub from_port: String,
    /// Switch at the upper end.
    pub to: String,
    /// Switch port at the upper end.
    pub to_port: u32,
}

fn width(n: u32) -> usize {
    n.to_string().len().max(2)
}

/// Device names of a tree: `su01-n07`, `su01-leaf-r3`, `spine-05` or `g02-spine-05`, `core-p05-02`.
#[derive(Clone, Debug)]
pub struct Names<'a> {
    tree: &'a FatTree,
    unit_width: usize,
    node_width: usize,
}

impl<'a> Names<'a> {
    /// Names for a tree.
    pub fn new(tree: &'a FatTree) -> Self {
        Self {
            tree,
            unit_width: width(tree.units),
            node_width: width(tree.nodes_per_unit),
        }
    }

    /// A scalable unit (from zero): `su01`.
    pub fn unit(&self, unit: u32) -> String {
        format!("su{:0w$}", unit + 1, w = self.unit_width)
    }

    /// A node by unit and position in it (from zero): `su01-n07`.
    pub fn node(&self, unit: u32, index: u32) -> String {
        format!(
            "{}-n{:0w$}",
            self.unit(unit),
            index + 1,
            w = self.node_width
        )
    }

    /// The nodes of a unit as a Slurm hostlist: `su01-n[01-32]`.
    pub fn unit_hostlist(&self, unit: u32) -> String {
        let n = self.tree.nodes_in_unit(unit);
        if n == 1 {
            return self.node(unit, 0);
        }
        format!(
            "{}-n[{:0w$}-{:0w$}]",
            self.unit(unit),
            1,
            n,
            w = self.node_width
        )
    }

    /// A leaf by number (`unit * rails + rail`): `su01-leaf-r3`.
    pub fn leaf(&self, leaf: u32) -> String {
        format!(
            "{}-leaf-r{}",
            self.unit(leaf / self.tree.rails),
            leaf % self.tree.rails + 1
        )
    }

    /// A spine group (three tiers): `g02`.
    pub fn group(&self, group: u32) -> String {
        format!("g{:0w$}", group + 1, w = width(self.tree.spine_groups))
    }

    /// A spine by group and index: `spine-05` in two tiers, `g02-spine-05` in three.
    pub fn spine(&self, group: u32, spine: u32) -> String {
        let index = format!(
            "spine-{:0w$}",
            spine + 1,
            w = width(self.tree.spines_per_group)
        );
        if self.tree.tiers == 3 {
            format!("{}-{index}", self.group(group))
        } else {
            index
        }
    }

    /// A core by plane and index: `core-p05-02`.
    pub fn core(&self, plane: u32, core: u32) -> String {
        format!(
            "core-p{:0pw$}-{:0cw$}",
            plane + 1,
            core + 1,
            pw = width(self.tree.spines_per_group),
            cw = width(self.tree.cores_per_plane)
        )
    }
}

/// Calls `each` with every cable of the tree, in order; stops at the first error.
pub fn for_each_cable<E>(
    tree: &FatTree,
    mut each: impl FnMut(&Cable) -> Result<(), E>,
) -> Result<(), E> {
    let names = Names::new(tree);
    for unit in 0..tree.units {
        for index in 0..tree.nodes_in_unit(unit) {
            let node = names.node(unit, index);
            for rail in 0..tree.rails {
                each(&Cable {
                    kind: CableKind::NodeLeaf,
                    from: node.clone(),
                    from_port: format!("rail{}", rail + 1),
                    to: names.leaf(unit * tree.rails + rail),
                    to_port: index + 1,
                })?;
            }
        }
    }
    if tree.tiers >= 2 {
        for leaf in 0..tree.leaves() {
            let name = names.leaf(leaf);
            for uplink in 0..tree.leaf_uplinks {
                let (group, spine, port) = tree.leaf_uplink(leaf, uplink);
                each(&Cable {
                    kind: CableKind::LeafSpine,
                    from: name.clone(),
                    from_port: (tree.nodes_per_unit + uplink + 1).to_string(),
                    to: names.spine(group, spine),
                    to_port: port + 1,
                })?;
            }
        }
    }
    if tree.tiers == 3 {
        let half = tree.radix / 2;
        for group in 0..tree.spine_groups {
            for spine in 0..tree.spines_per_group {
                let name = names.spine(group, spine);
                for uplink in 0..tree.spine_uplinks() {
                    let (plane, core, port) = tree.spine_uplink(group, spine, uplink);
                    each(&Cable {
                        kind: CableKind::SpineCore,
                        from: name.clone(),
                        from_port: (half + uplink + 1).to_string(),
                        to: names.core(plane, core),
                        to_port: port + 1,
                    })?;
                }
            }
        }
    }
    Ok(())
}
