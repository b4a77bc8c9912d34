//! The reader of spec files: any bytes as YAML or JSON, through the bounded parser, the
//! schema check, typed deserialization and the site blueprint's unknown-field check.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let loaded = fabbrica::documents::load_str("fuzz.yaml", text);
    // Every problem is located and printable.
    for problem in &loaded.problems {
        let _ = problem.to_string();
    }
    let _ = fabbrica::blueprint_file::parse(text);
});
