//! Cluster cells: a site of more GPU Nodes than one Kubernetes cluster holds (5,000 by
//! default, what upstream tests one cluster to) is rendered as several clusters, each with
//! its own Factory, Workspaces and GitOps entry.
//!
//! Cells follow the fabric, never cut through it: a cell holds whole spine groups, so whole
//! scalable units, and with them whole leaf groups and NVLink domains (both lie inside a
//! unit). A job placed in one cell has every level of the fabric below the cores to itself.
//! Where a spine group's leaves do not end on a unit boundary (the switch's half radix is no
//! multiple of the rails), the block a cell is made of is the smallest run of spine groups that
//! does. The fabric itself stays one: the cores (three tiers) are shared by the cells, and
//! cabling, topology and bill of materials are the site's.

use serde::Serialize;

use crate::fat_tree::FatTree;
use crate::objects::SiteObjects;

/// Nodes one cluster holds unless the blueprint (`spec.cells.maxNodes`) or the command line
/// says otherwise: the scale one Kubernetes cluster is tested to upstream.
pub const DEFAULT_MAX_NODES: u32 = 5_000;

/// One cluster cell of a site: a run of whole spine groups.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cell {
    /// The cell's cluster and Factory name: the site's name for a site of one cell,
    /// `<site>-c01`, `<site>-c02` ... otherwise.
    pub name: String,
    /// The site's first scalable unit in the cell (from zero).
    pub first_unit: u32,
    /// Scalable units.
    pub units: u32,
    /// The site's first node in the cell (from zero, in node order).
    pub first_node: u32,
    /// GPU Nodes.
    pub nodes: u32,
    /// GPUs.
    pub gpus: u64,
    /// The first spine group (from zero; 0 in two tiers).
    pub first_spine_group: u32,
    /// Spine groups (1 in one or two tiers).
    pub spine_groups: u32,
    /// Leaf switches: one per rail per unit.
    pub leaf_switches: u32,
    /// Spine switches of its spine groups.
    pub spine_switches: u32,
    /// The site's first compute rack in the cell (from zero).
    pub first_rack: u32,
    /// Compute racks.
    pub compute_racks: u32,
    /// Leaf racks: one per unit.
    pub leaf_racks: u32,
}

/// A limit below the smallest block a cell can be made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{max_nodes} nodes per cluster is less than one {block} of this fabric ({block_nodes} nodes), which a cell never splits; valid: at least {block_nodes}"
)]
pub struct LimitTooSmall {
    /// The limit asked for.
    pub max_nodes: u32,
    /// The nodes of the largest block.
    pub block_nodes: u32,
    /// What the block is: `spine group`, `run of spine groups`, or `two-tier fabric`.
    pub block: &'static str,
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Scalable units of the block cells are made of, and what it is called.
fn block_units(tree: &FatTree) -> (u32, &'static str) {
    if tree.tiers < 3 {
        // Two tiers: every leaf reaches every spine, so the whole fabric is one block.
        return (tree.units.max(1), "two-tier fabric");
    }
    let half = tree.radix / 2;
    let rails = tree.rails.max(1);
    let leaves = half / gcd(half, rails) * rails;
    let name = if leaves == half {
        "spine group"
    } else {
        "run of spine groups"
    };
    (leaves / rails, name)
}

/// Splits a site's fabric into cells of at most `max_nodes` GPU Nodes: as few cells as the
/// limit allows, blocks spread evenly (the first cells take one more when they do not divide).
/// A site within the limit is one cell named like the site.
pub fn split(
    site: &str,
    tree: &FatTree,
    gpus_per_node: u32,
    nodes_per_rack: u32,
    max_nodes: u32,
) -> Result<Vec<Cell>, LimitTooSmall> {
    let (units_per_block, block) = block_units(tree);
    let npu = tree.nodes_per_unit;
    let blocks = tree.units.div_ceil(units_per_block);
    let block_nodes = |first: u32, count: u32| {
        let start = first * units_per_block * npu;
        let end = ((first + count) * units_per_block * npu).min(tree.nodes);
        end - start
    };
    let ranges = if tree.nodes <= max_nodes {
        vec![(0, blocks)]
    } else {
        let largest = block_nodes(0, 1);
        if largest > max_nodes {
            return Err(LimitTooSmall {
                max_nodes,
                block_nodes: largest,
                block,
            });
        }
        let mut chosen = None;
        for cells in tree.nodes.div_ceil(max_nodes)..=blocks {
            let ranges = spread(blocks, cells);
            if ranges
                .iter()
                .all(|&(first, count)| block_nodes(first, count) <= max_nodes)
            {
                chosen = Some(ranges);
                break;
            }
        }
        chosen.expect("one block per cell fits, each block being within the limit")
    };
    let single = ranges.len() == 1;
    let npr = nodes_per_rack.max(1);
    let half = (tree.radix / 2).max(1);
    Ok(ranges
        .into_iter()
        .enumerate()
        .map(|(i, (first_block, count))| {
            let first_unit = first_block * units_per_block;
            let units = (count * units_per_block).min(tree.units - first_unit);
            let first_node = first_unit * npu;
            let nodes = block_nodes(first_block, count);
            let (first_spine_group, spine_groups) = if tree.tiers == 3 {
                let first_leaf = first_unit * tree.rails;
                let last_leaf = (first_unit + units) * tree.rails - 1;
                (first_leaf / half, last_leaf / half - first_leaf / half + 1)
            } else {
                (0, 1)
            };
            let first_rack = first_node / npr;
            Cell {
                name: if single {
                    site.to_owned()
                } else {
                    format!("{site}-c{:02}", i + 1)
                },
                first_unit,
                units,
                first_node,
                nodes,
                gpus: u64::from(nodes) * u64::from(gpus_per_node),
                first_spine_group,
                spine_groups,
                leaf_switches: units * tree.rails,
                spine_switches: if tree.tiers == 3 {
                    spine_groups * tree.spines_per_group
                } else {
                    tree.spines()
                },
                first_rack,
                compute_racks: (first_node + nodes).div_ceil(npr) - first_rack,
                leaf_racks: units,
            }
        })
        .collect())
}

/// `blocks` spread over `cells` consecutive runs as (first block, blocks).
fn spread(blocks: u32, cells: u32) -> Vec<(u32, u32)> {
    let base = blocks / cells;
    let extra = blocks % cells;
    let mut first = 0;
    (0..cells)
        .map(|i| {
            let count = base + u32::from(i < extra);
            let range = (first, count);
            first += count;
            range
        })
        .collect()
}

/// A tenant's GPUs shared out over the cells in proportion to their GPUs: whole GPUs, the
/// remainder to the cells with the largest fractions (the first on a tie), never more than a
/// cell holds. The shares add up to `gpus` whenever the site holds that many.
pub fn shares(gpus: u32, cells: &[Cell]) -> Vec<u32> {
    let total: u64 = cells.iter().map(|c| c.gpus).sum();
    if total == 0 {
        return vec![0; cells.len()];
    }
    let want = u64::from(gpus);
    let mut out: Vec<u64> = cells.iter().map(|c| want * c.gpus / total).collect();
    let mut order: Vec<usize> = (0..cells.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(want * cells[i].gpus % total));
    let mut left = want - out.iter().sum::<u64>();
    for i in order.into_iter().cycle().take(cells.len() * 2) {
        if left == 0 {
            break;
        }
        if out[i] < cells[i].gpus {
            out[i] += 1;
            left -= 1;
        }
    }
    out.into_iter()
        .map(|g| u32::try_from(g).unwrap_or(u32::MAX))
        .collect()
}

/// Each cell's objects from the site's: a Factory named like the cell expecting its nodes,
/// every tenant's Workspace with its share of the tenant's GPUs (storage quotas as declared:
/// the storage is the site's, shared by its cells), and the starter notebooks in the first cell
/// only. A site of one cell gets its objects back unchanged.
pub fn cell_objects(site: &SiteObjects, cells: &[Cell]) -> Vec<SiteObjects> {
    if cells.len() <= 1 {
        return vec![site.clone()];
    }
    let tenant_shares: Vec<Vec<u32>> = site
        .workspaces
        .iter()
        .map(|w| {
            let gpus = w.spec.gpu_quota.first().map_or(0, |q| q.gpus);
            shares(gpus, cells)
        })
        .collect();
    cells
        .iter()
        .enumerate()
        .map(|(i, cell)| {
            let mut factory = site.factory.clone();
            factory.metadata.name = Some(cell.name.clone());
            for pool in &mut factory.spec.gpu_pools {
                pool.expected_nodes = cell.nodes;
            }
            let workspaces = site
                .workspaces
                .iter()
                .zip(&tenant_shares)
                .map(|(w, share)| {
                    let mut w = w.clone();
                    w.spec.factory = cell.name.clone();
                    for quota in &mut w.spec.gpu_quota {
                        quota.gpus = share[i];
                    }
                    w
                })
                .collect();
            SiteObjects {
                factory,
                workspaces,
                notebooks: if i == 0 {
                    site.notebooks.clone()
                } else {
                    Vec::new()
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The embedded Gigafactory's fabric: 25,000 GB200 NVL72 trays, 72 per unit, 4 rails,
    /// 144-port XDR switches (18 units per spine group).
    fn giga() -> FatTree {
        FatTree::size(25_000, 72, 4, 144, 1).unwrap()
    }

    /// Every node in exactly one cell, in order; every cell within the limit; every boundary
    /// on a spine group's, a unit's, a leaf group's (32 nodes) and an NVLink domain's (18).
    fn check(tree: &FatTree, cells: &[Cell], max_nodes: u32, nvlink: u32) {
        let mut next_node = 0;
        let mut next_unit = 0;
        for cell in cells {
            assert_eq!(cell.first_node, next_node, "{cell:?}");
            assert_eq!(cell.first_unit, next_unit, "{cell:?}");
            assert!(cell.nodes <= max_nodes, "{cell:?} over {max_nodes}");
            assert_eq!(cell.first_node % tree.nodes_per_unit, 0);
            assert_eq!(cell.first_node % nvlink, 0, "an NVLink domain split");
            if tree.tiers == 3 {
                assert_eq!(
                    cell.first_unit * tree.rails % (tree.radix / 2),
                    0,
                    "a spine group split"
                );
            }
            let units_nodes: u32 = (cell.first_unit..cell.first_unit + cell.units)
                .map(|u| tree.nodes_in_unit(u))
                .sum();
            assert_eq!(units_nodes, cell.nodes, "{cell:?}");
            next_node += cell.nodes;
            next_unit += cell.units;
        }
        assert_eq!(next_node, tree.nodes);
        assert_eq!(next_unit, tree.units);
    }

    #[test]
    fn a_gigafactory_splits_into_cells_of_whole_spine_groups() {
        let tree = giga();
        let cells = split("giga-eu", &tree, 4, 18, DEFAULT_MAX_NODES).unwrap();
        check(&tree, &cells, DEFAULT_MAX_NODES, 18);
        // 20 spine groups of 1,296 trays (the last 432): three per cell at most.
        assert_eq!(cells.len(), 7);
        assert_eq!(
            cells.iter().map(|c| c.spine_groups).collect::<Vec<_>>(),
            [3, 3, 3, 3, 3, 3, 2]
        );
        assert_eq!(cells[0].name, "giga-eu-c01");
        assert_eq!(
            (cells[0].nodes, cells[0].gpus, cells[0].leaf_switches),
            (3_888, 15_552, 216)
        );
        assert_eq!(cells[0].spine_switches, 3 * tree.spines_per_group);
        assert_eq!(cells[0].compute_racks, 3_888 / 18);
        assert_eq!(cells[6].first_spine_group, 18);
        assert_eq!(
            cells.iter().map(|c| c.leaf_switches).sum::<u32>(),
            tree.leaves()
        );
        assert_eq!(
            cells.iter().map(|c| c.spine_switches).sum::<u32>(),
            tree.spines()
        );
    }

    #[test]
    fn every_limit_keeps_every_node_in_one_cell_and_no_block_split() {
        let tree = giga();
        for max in [1_296, 1_300, 2_600, 4_000, 5_000, 9_999, 24_999, 25_000] {
            let cells = split("giga-eu", &tree, 4, 18, max).unwrap();
            check(&tree, &cells, max, 18);
            assert_eq!(cells.len() == 1, max >= tree.nodes, "limit {max}");
        }
        // NDR, 8 rails: a spine group of 32 leaves is 4 units of 32 DGX nodes.
        let ndr = FatTree::size(8_000, 32, 8, 64, 1).unwrap();
        for max in [128, 1_000, 5_000] {
            check(&ndr, &split("ai", &ndr, 8, 4, max).unwrap(), max, 1);
        }
    }

    #[test]
    fn a_spine_group_that_ends_inside_a_unit_is_joined_to_the_next() {
        // 5 rails on 64-port switches: a group of 32 leaves ends inside a unit, so a block is
        // 160 leaves (5 groups, 32 units of 16 nodes: 512 nodes).
        let tree = FatTree::size(4_000, 16, 5, 64, 1).unwrap();
        assert_eq!(tree.tiers, 3);
        let cells = split("odd", &tree, 8, 4, 1_000).unwrap();
        check(&tree, &cells, 1_000, 1);
        for cell in &cells {
            assert_eq!(cell.first_unit % 32, 0, "{cell:?}");
        }
        let err = split("odd", &tree, 8, 4, 500).unwrap_err();
        assert_eq!(err.block_nodes, 512);
        assert_eq!(err.block, "run of spine groups");
    }

    #[test]
    fn a_site_within_the_limit_is_one_cell_named_like_the_site() {
        let tree = FatTree::size(512, 32, 8, 64, 1).unwrap();
        let cells = split("it4lia", &tree, 8, 4, DEFAULT_MAX_NODES).unwrap();
        assert_eq!(cells.len(), 1);
        assert_eq!(cells[0].name, "it4lia");
        assert_eq!(cells[0].nodes, 512);
    }

    #[test]
    fn a_limit_below_a_spine_group_is_refused_with_the_smallest_valid() {
        let err = split("giga-eu", &giga(), 4, 18, 1_000).unwrap_err();
        assert_eq!(err.block_nodes, 1_296);
        assert!(err.to_string().ends_with("valid: at least 1296"), "{err}");
        // Two tiers hold every leaf under every spine: the whole fabric is one block.
        let two = FatTree::size(256, 32, 8, 64, 1).unwrap();
        assert_eq!(two.tiers, 2);
        assert_eq!(
            split("small", &two, 8, 4, 100).unwrap_err().block,
            "two-tier fabric"
        );
    }

    #[test]
    fn tenant_shares_add_up_and_follow_the_cells_gpus() {
        let cells = split("giga-eu", &giga(), 4, 18, DEFAULT_MAX_NODES).unwrap();
        for gpus in [0, 1, 7, 5_000, 40_000, 100_000] {
            let s = shares(gpus, &cells);
            assert_eq!(
                s.iter().map(|&g| u64::from(g)).sum::<u64>(),
                u64::from(gpus)
            );
            for (share, cell) in s.iter().zip(&cells) {
                assert!(u64::from(*share) <= cell.gpus);
            }
        }
        let s = shares(40_000, &cells);
        // The smaller last cell (2 groups of 6) gets less than the others.
        assert!(s[6] < s[0], "{s:?}");
    }
}
