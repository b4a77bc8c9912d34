//! Slurm hostlists: many Node names written as a few ranges (`gpu-[0001-0032,0040]`).
//!
//! A leaf group of a gigafactory lists its 32 Nodes in `topology.conf`; written out name by name,
//! 25,000 Nodes made the topology ConfigMap larger than the 1 MiB the API server accepts for one.
//! Slurm reads a hostlist wherever `topology.conf` names Nodes, so the same Nodes fit in a few
//! bytes a range.

use std::collections::BTreeMap;

/// `names` as one Slurm hostlist: the names that share a prefix and a numeric suffix of one width
/// are written as ranges in brackets, the others as they are; each name once, prefixes in order.
pub fn compress<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let mut ranged: BTreeMap<(&str, usize), Vec<u64>> = BTreeMap::new();
    let mut plain: Vec<&str> = Vec::new();
    for name in names {
        match numbered(name) {
            Some((prefix, digits, n)) => ranged.entry((prefix, digits)).or_default().push(n),
            None => plain.push(name),
        }
    }
    plain.sort_unstable();
    plain.dedup();
    let mut parts: Vec<String> = plain.into_iter().map(str::to_owned).collect();
    for ((prefix, width), mut numbers) in ranged {
        numbers.sort_unstable();
        numbers.dedup();
        if let [n] = numbers[..] {
            parts.push(format!("{prefix}{n:0width$}"));
            continue;
        }
        let mut ranges: Vec<String> = Vec::new();
        let mut start = 0;
        for i in 1..=numbers.len() {
            if i == numbers.len() || numbers[i] != numbers[i - 1] + 1 {
                let (lo, hi) = (numbers[start], numbers[i - 1]);
                ranges.push(if lo == hi {
                    format!("{lo:0width$}")
                } else {
                    format!("{lo:0width$}-{hi:0width$}")
                });
                start = i;
            }
        }
        parts.push(format!("{prefix}[{}]", ranges.join(",")));
    }
    parts.join(",")
}

/// A name's prefix, the width of its numeric suffix and its number; `None` when it does not end
/// in digits after a non-empty prefix, or the number is too large.
fn numbered(name: &str) -> Option<(&str, usize, u64)> {
    let prefix = name.trim_end_matches(|c: char| c.is_ascii_digit());
    let digits = &name[prefix.len()..];
    if prefix.is_empty() || digits.is_empty() {
        return None;
    }
    Some((prefix, digits.len(), digits.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slurm's reading of a hostlist: each bracket expanded, zero padding kept.
    fn expand(hostlist: &str) -> Vec<String> {
        let mut names = Vec::new();
        let mut rest = hostlist;
        while !rest.is_empty() {
            let (item, tail) = match (rest.find('['), rest.find(',')) {
                (Some(open), comma) if comma.is_none_or(|c| open < c) => {
                    let close = rest.find(']').expect("closed bracket");
                    (&rest[..=close], rest[close + 1..].trim_start_matches(','))
                }
                (_, Some(comma)) => (&rest[..comma], &rest[comma + 1..]),
                (_, None) => (rest, ""),
            };
            match item.split_once('[') {
                Some((prefix, ranges)) => {
                    for range in ranges.trim_end_matches(']').split(',') {
                        let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                        let width = lo.len();
                        let (lo, hi): (u64, u64) = (lo.parse().unwrap(), hi.parse().unwrap());
                        names.extend((lo..=hi).map(|n| format!("{prefix}{n:0width$}")));
                    }
                }
                None => names.push(item.to_owned()),
            }
            rest = tail;
        }
        names.sort();
        names
    }

    #[test]
    fn consecutive_names_become_ranges_and_read_back_as_the_same_names() {
        let names = [
            "bench-train-00003",
            "bench-train-00001",
            "bench-train-00002",
            "bench-train-00007",
            "bench-train-00010",
            "bench-train-00011",
            "gpu-9",
            "gpu-10",
            "gpu-11",
            "login",
            "bench-spare",
            "node007",
        ];
        let list = compress(names);
        assert_eq!(
            list,
            "bench-spare,login,bench-train-[00001-00003,00007,00010-00011],gpu-9,gpu-[10-11],node007"
        );
        let mut sorted: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        sorted.sort();
        assert_eq!(expand(&list), sorted);
    }

    #[test]
    fn a_leaf_group_of_a_gigafactory_is_one_range() {
        let names: Vec<String> = (32..64).map(|i| format!("b200-{i:05}")).collect();
        assert_eq!(
            compress(names.iter().map(String::as_str)),
            "b200-[00032-00063]"
        );
        assert_eq!(compress(["b200-00032", "b200-00032"]), "b200-00032");
        assert_eq!(compress([]), "");
        // All digits, or a number too large: kept as written.
        assert_eq!(
            compress(["1234", "n99999999999999999999999"]),
            "1234,n99999999999999999999999"
        );
    }
}
