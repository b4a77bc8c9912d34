fn main() -> anyhow::Result<()> {
    println!("fabbrica-operator {}", env!("CARGO_PKG_VERSION"));
    Ok(())
}
