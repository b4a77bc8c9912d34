//! Reading Kubernetes quantities (`500m`, `64Gi`, `1.5T`, `2e3`) as numbers, for comparisons.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The value of a quantity in base units (cores, bytes), or `None` when it is not a quantity.
pub fn value(quantity: &Quantity) -> Option<f64> {
    parse(&quantity.0)
}

/// Parses the Kubernetes quantity grammar: a signed decimal number, then a binary
/// suffix (`Ki`..`Ei`), a decimal suffix (`n`, `u`, `m`, `k`, `M`..`E`) or an exponent.
pub fn parse(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        exp if exp.starts_with(['e', 'E']) => 10f64.powi(exp[1..].parse().ok()?),
        _ => return None,
    };
    Some(number * factor)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn reads_the_suffixes_kubernetes_accepts() {
        assert_eq!(parse("500m"), Some(0.5));
        assert_eq!(parse("16"), Some(16.0));
        assert_eq!(parse("64Gi"), Some(64.0 * 1024f64.powi(3)));
        assert_eq!(parse("2Pi"), Some(2.0 * 1024f64.powi(5)));
        assert_eq!(parse("1.5T"), Some(1.5e12));
        assert_eq!(parse("2e3"), Some(2000.0));
        assert_eq!(parse("12 cores"), None);
        assert_eq!(parse("Gi"), None);
    }
}
