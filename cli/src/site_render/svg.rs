//! The report's two diagrams as hand-written SVG: the compute fabric by
//! scalable unit, and the rack elevation of one unit. Large sites are drawn
//! with their first units and their last, the rest summarized in words.

use std::fmt::Write;

use fabbrica_crds::catalog;
use fabbrica_crds::v1alpha1::GpuSystem;
use fabbrica_site::{Names, Plan, switch};

/// Units drawn one by one; past this many, the first ones and the last are drawn.
const DRAWN_UNITS: u32 = 8;
const UNIT_WIDTH: u32 = 150;
const RACK_UNIT_PX: u32 = 8;
const RACK_UNITS: u32 = 42;
const FONT: &str = r#"font-family="sans-serif" font-size="11""#;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The units the fabric diagram draws.
pub fn drawn_units(units: u32) -> Vec<u32> {
    if units <= DRAWN_UNITS {
        (0..units).collect()
    } else {
        (0..DRAWN_UNITS - 1).chain([units - 1]).collect()
    }
}

/// `fabric.svg`: cores and spines as bands, each drawn unit with its rail leaves and nodes.
pub fn fabric(plan: &Plan) -> String {
    let f = &plan.compute_fabric;
    let tree = &f.tree;
    let names = Names::new(tree);
    let units = drawn_units(tree.units);
    let rails = tree.rails;
    let width = 40 + UNIT_WIDTH * units.len() as u32;
    let leaf_top = 190;
    let node_top = leaf_top + rails * 18 + 20;
    let height = node_top + 70;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" {FONT}>"#
    );
    let _ = writeln!(
        s,
        r#"<title>Compute fabric of {}: {} tiers, {} leaf, {} spine, {} core switches</title>"#,
        escape(&plan.site),
        f.tiers,
        f.leaf_switches,
        f.spine_switches,
        f.core_switches
    );
    let _ = writeln!(
        s,
        r##"<rect width="{width}" height="{height}" fill="#ffffff"/>"##
    );
    if f.core_switches > 0 {
        let _ = writeln!(
            s,
            r##"<g class="core"><rect x="20" y="20" width="{}" height="40" rx="4" fill="#fde68a" stroke="#92400e"/><text x="{}" y="44" text-anchor="middle">{} core switches in {} planes</text></g>"##,
            width - 40,
            width / 2,
            f.core_switches,
            tree.spines_per_group
        );
    }
    if f.spine_switches > 0 {
        let groups = if tree.tiers == 3 {
            format!(" in {} spine groups", tree.spine_groups)
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            r##"<g class="spine"><rect x="20" y="90" width="{}" height="40" rx="4" fill="#bfdbfe" stroke="#1e3a8a"/><text x="{}" y="114" text-anchor="middle">{} spine switches{groups}</text></g>"##,
            width - 40,
            width / 2,
            f.spine_switches
        );
    }
    for (column, &unit) in units.iter().enumerate() {
        let x = 20 + UNIT_WIDTH * column as u32;
        let id = names.unit(unit);
        let _ = writeln!(s, r#"<g class="su" id="{id}">"#);
        if column == units.len() - 1 && unit != column as u32 {
            let _ = writeln!(
                s,
                r##"<text x="{}" y="{}" text-anchor="end" fill="#6b7280">… {} more units …</text>"##,
                x - 6,
                leaf_top - 8,
                unit - column as u32
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" font-weight="bold">{}</text>"#,
            x + 4,
            leaf_top - 22,
            id.to_uppercase()
        );
        if f.spine_switches > 0 {
            let _ = writeln!(
                s,
                r##"<line x1="{}" y1="130" x2="{}" y2="{}" stroke="#1e3a8a"/>"##,
                x + UNIT_WIDTH / 2 - 10,
                x + UNIT_WIDTH / 2 - 10,
                leaf_top - 4
            );
        }
        for rail in 0..rails {
            let y = leaf_top + rail * 18;
            let leaf = names.leaf(unit * rails + rail);
            let _ = writeln!(
                s,
                r##"<rect class="leaf" x="{x}" y="{y}" width="{}" height="14" rx="2" fill="#c7d2fe" stroke="#3730a3"><title>{leaf}</title></rect><text x="{}" y="{}" font-size="9">{leaf}</text>"##,
                UNIT_WIDTH - 20,
                x + 4,
                y + 11
            );
        }
        let nodes = tree.nodes_in_unit(unit);
        let _ = writeln!(
            s,
            r##"<rect class="nodes" x="{x}" y="{node_top}" width="{}" height="40" rx="4" fill="#bbf7d0" stroke="#166534"/><text x="{}" y="{}" text-anchor="middle">{nodes} nodes</text><text x="{}" y="{}" text-anchor="middle" font-size="9">{}</text>"##,
            UNIT_WIDTH - 20,
            x + (UNIT_WIDTH - 20) / 2,
            node_top + 18,
            x + (UNIT_WIDTH - 20) / 2,
            node_top + 32,
            escape(&names.unit_hostlist(unit))
        );
        let _ = writeln!(s, "</g>");
    }
    let _ = writeln!(
        s,
        r##"<text x="20" y="{}" fill="#374151">{} units of {} nodes, {} rails: one leaf per rail per unit, {} Gb/s {}</text>"##,
        height - 12,
        tree.units,
        tree.nodes_per_unit,
        rails,
        f.port_gbps,
        escape(&f.switch)
    );
    s.push_str("</svg>\n");
    s
}

/// `racks.svg`: the elevation of the first scalable unit's racks and its leaf rack.
pub fn racks(plan: &Plan) -> String {
    let tree = &plan.compute_fabric.tree;
    let names = Names::new(tree);
    let system = GpuSystem::from_id(&plan.system).map(catalog::system);
    let node_units = system.map_or(1, |s| s.rack_units);
    let per_rack = plan.rack_layout.nodes_per_rack.max(1);
    let nodes = tree.nodes_in_unit(0);
    let compute_racks = nodes.div_ceil(per_rack);
    let switch_units = switch(&plan.compute_fabric.switch).map_or(1, |s| s.rack_units);
    let rack_width = 130;
    let racks = compute_racks + 1;
    let width = 40 + (rack_width + 20) * racks;
    let height = RACK_UNITS * RACK_UNIT_PX + 90;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" {FONT}>"#
    );
    let _ = writeln!(
        s,
        r#"<title>Rack elevation of {} of {}: {} compute racks and its leaf rack; {} racks in all</title>"#,
        names.unit(0),
        escape(&plan.site),
        compute_racks,
        plan.racks
    );
    let _ = writeln!(
        s,
        r##"<rect width="{width}" height="{height}" fill="#ffffff"/>"##
    );
    let draw_rack = |s: &mut String, index: u32, label: &str| {
        let x = 20 + index * (rack_width + 20);
        let _ = writeln!(
            s,
            r##"<rect class="rack" x="{x}" y="40" width="{rack_width}" height="{}" fill="#f3f4f6" stroke="#111827"/><text x="{}" y="32" text-anchor="middle">{label}</text>"##,
            RACK_UNITS * RACK_UNIT_PX,
            x + rack_width / 2
        );
        x
    };
    // Racks fill from the bottom, as heavy equipment is mounted.
    let slot_y = |u: u32, height_units: u32| 40 + (RACK_UNITS - u - height_units) * RACK_UNIT_PX;
    for rack in 0..compute_racks {
        let x = draw_rack(&mut s, rack, &format!("compute {}", rack + 1));
        let first = rack * per_rack;
        for index in first..(first + per_rack).min(nodes) {
            let u = 2 + (index - first) * node_units;
            if u + node_units > RACK_UNITS {
                break;
            }
            let name = names.node(0, index);
            let _ = writeln!(
                s,
                r##"<rect class="node" x="{}" y="{}" width="{}" height="{}" fill="#bbf7d0" stroke="#166534"><title>{name}</title></rect><text x="{}" y="{}" font-size="9">{name}</text>"##,
                x + 4,
                slot_y(u, node_units),
                rack_width - 8,
                node_units * RACK_UNIT_PX - 1,
                x + 8,
                slot_y(u, node_units) + 9.min(node_units * RACK_UNIT_PX - 1)
            );
        }
    }
    let x = draw_rack(&mut s, compute_racks, "leaf switches");
    for rail in 0..tree.rails {
        let u = 10 + rail * (switch_units + 1);
        if u + switch_units > RACK_UNITS {
            break;
        }
        let leaf = names.leaf(rail);
        let _ = writeln!(
            s,
            r##"<rect class="leaf" x="{}" y="{}" width="{}" height="{}" fill="#c7d2fe" stroke="#3730a3"><title>{leaf}</title></rect><text x="{}" y="{}" font-size="8">{leaf}</text>"##,
            x + 4,
            slot_y(u, switch_units),
            rack_width - 8,
            switch_units * RACK_UNIT_PX - 1,
            x + 8,
            slot_y(u, switch_units) + 7
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="20" y="{}" fill="#374151">{}: {} nodes in {} racks of {}; the site has {} racks ({} compute, {} leaf, {} spine/core, {} management)</text>"##,
        height - 14,
        names.unit(0),
        nodes,
        compute_racks,
        per_rack,
        plan.racks,
        plan.rack_layout.compute,
        plan.rack_layout.leaf,
        plan.rack_layout.spine,
        plan.rack_layout.management
    );
    s.push_str("</svg>\n");
    s
}
