//! The shared validation on whatever the reader accepts: every Factory, Workspace and
//! JupyterEnvironment of the input checked against each other, every SiteBlueprint
//! validated, as `fabbrica validate` and the operator do.
#![no_main]

use fabbrica::documents::Object;
use fabbrica_crds::validation::{
    validate_factory, validate_jupyter, validate_object_name, validate_workspace,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let loaded = fabbrica::documents::load_str("fuzz.yaml", text);
    let objects: Vec<&Object> = loaded.documents.iter().filter_map(|d| d.object.as_ref()).collect();
    let factories = objects.iter().filter_map(|o| match o {
        Object::Factory(f) => Some(&f.spec),
        _ => None,
    });
    let workspaces: Vec<_> = objects
        .iter()
        .filter_map(|o| match o {
            Object::Workspace(w) => Some(&w.spec),
            _ => None,
        })
        .collect();
    for factory in factories {
        let _ = validate_factory(factory);
        for (i, workspace) in workspaces.iter().enumerate() {
            let others: Vec<(&str, _)> = workspaces
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, w)| ("other", *w))
                .collect();
            let _ = validate_workspace(workspace, Some(factory), &others);
            for object in &objects {
                if let Object::JupyterEnvironment(j) = object {
                    let _ = validate_jupyter(&j.spec, factory, workspace);
                    let _ = validate_object_name("JupyterEnvironment", j.metadata.name.as_deref());
                }
            }
        }
    }
    for workspace in &workspaces {
        let _ = validate_workspace(workspace, None, &[]);
    }
    for object in &objects {
        if let Object::SiteBlueprint(b) = object {
            let _ = fabbrica_site::validate(b);
        }
    }
});
