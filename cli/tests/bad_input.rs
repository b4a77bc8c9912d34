//! The malformed-input corpus (`tests/fixtures/bad-input/`, indexed by `cases.tsv`) through
//! `fabbrica validate`, `plan` and `blueprint render`: every case is refused with exit code 1
//! or 2 and an error naming the field and what is valid; none panics, hangs or grows past
//! the memory bound; and a refused render writes nothing, leaving an existing folder as it was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Address space the CLI may reserve on any input, in KiB (`ulimit -v`): the binary, its
/// libraries and thread stacks take about a hundred MiB of it, a file at the input limit
/// (16 MiB) parsed into values a few times that.
const MEMORY_LIMIT_KIB: u64 = 1024 * 1024;
/// A hang detector, not a performance bound: every case takes a fraction of a second.
const HANG_AFTER: Duration = Duration::from_secs(60);

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/bad-input")
}

#[derive(Debug)]
struct Case {
    file: String,
    commands: Vec<String>,
    with: Vec<String>,
    field: Option<String>,
    message: Option<String>,
}

fn cases() -> Vec<Case> {
    let index = std::fs::read_to_string(corpus().join("cases.tsv")).expect("the index");
    let dash = |s: &str| (s != "-").then(|| s.to_owned());
    index
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("file\t") && !l.trim().is_empty())
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            assert_eq!(cols.len(), 5, "five columns: {line:?}");
            let list = |s: &str| {
                dash(s)
                    .map(|s| s.split(',').map(str::to_owned).collect())
                    .unwrap_or_default()
            };
            Case {
                file: cols[0].to_owned(),
                commands: list(cols[1]),
                with: list(cols[2]),
                field: dash(cols[3]),
                message: dash(cols[4]),
            }
        })
        .collect()
}

/// Writes the cases too large to keep in the repository.
fn generated(name: &str, dir: &Path) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    let site = std::fs::read_to_string(corpus().join("base/site.yaml")).expect("the base site");
    let text = match name {
        // Just over the input limit: a valid blueprint padded with comments.
        "huge-file" => {
            let line = format!("# {}\n", "x".repeat(1022));
            let mut text = site;
            while text.len() <= 17 * 1024 * 1024 {
                text.push_str(&line);
            }
            text
        }
        // Well under the byte limit, far over the value budget: 400,000 list items.
        "many-nodes" => site.replace(
            "  facility:\n",
            &format!(
                "  facility:\n    padding: [{}]\n",
                vec!["0"; 400_000].join(",")
            ),
        ),
        other => panic!("no generator for {other}"),
    };
    std::fs::write(&path, text).expect("written");
    path
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the CLI under the memory limit; a run past [`HANG_AFTER`] is killed and fails.
fn fabbrica(args: &[&std::ffi::OsStr]) -> Result<Run, String> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v {MEMORY_LIMIT_KIB} && exec \"$0\" \"$@\""
        ))
        .arg(env!("CARGO_BIN_EXE_fabbrica"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh runs");
    // Drain the pipes on threads so a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut s = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut s).ok();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut s).ok();
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waits") {
            break status;
        }
        if started.elapsed() > HANG_AFTER {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("still running after {HANG_AFTER:?}: killed"));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    Ok(Run {
        code: status.code(),
        stdout: text(out.join().expect("stdout read")),
        stderr: text(err.join().expect("stderr read")),
    })
}

/// Every file under `dir` with its contents.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.insert(path.clone(), std::fs::read(&path).unwrap_or_default());
            }
        }
    }
    files
}

/// What is wrong with one command's answer to one case, if anything.
fn check(case: &Case, command: &str, file: &Path, scratch: &Path) -> Result<(), String> {
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    let fresh = scratch.join("fresh");
    let existing = scratch.join("existing");
    match command {
        "validate" => {
            args.push("validate".into());
            args.push(file.into());
            args.extend(
                case.with
                    .iter()
                    .map(|w| corpus().join("base").join(w).into()),
            );
        }
        "plan" => args.extend(["plan".into(), file.into()]),
        "render" => {
            // A folder that holds a file the render writes and one it does not, rendered
            // into with --force: a refused render leaves both as they were.
            std::fs::create_dir_all(&existing).expect("a folder");
            std::fs::write(existing.join("README.md"), "the operator's own notes\n").expect("w");
            std::fs::write(existing.join("keep.txt"), "kept\n").expect("w");
            args.extend([
                "blueprint".into(),
                "render".into(),
                file.into(),
                "--force".into(),
                "--out".into(),
                existing.clone().into(),
            ]);
        }
        // Against a cluster: tests/tests/bad_input.rs.
        "apply" => return Ok(()),
        other => return Err(format!("unknown command {other} in cases.tsv")),
    }
    let before = snapshot(&existing);
    let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let run = fabbrica(&refs)?;
    let all = format!("{}{}", run.stdout, run.stderr);
    let mut wrong = Vec::new();
    if !matches!(run.code, Some(1 | 2)) {
        wrong.push(format!(
            "exit code {:?}, not 1 or 2 (101 is a panic, none a signal)",
            run.code
        ));
    }
    if run.stderr.contains("panicked") {
        wrong.push("panicked".into());
    }
    for needle in [&case.field, &case.message].into_iter().flatten() {
        if !all.contains(needle.as_str()) {
            wrong.push(format!("does not say {needle:?}"));
        }
    }
    if command == "render" {
        if snapshot(&existing) != before {
            wrong.push("changed the existing output folder".into());
        }
        // Without --force, into a folder that does not exist yet: none is made.
        let again = fabbrica(&[
            "blueprint".as_ref(),
            "render".as_ref(),
            file.as_os_str(),
            "--out".as_ref(),
            fresh.as_os_str(),
        ])?;
        if !matches!(again.code, Some(1 | 2)) || fresh.exists() {
            wrong.push(format!(
                "a render into a new folder exited {:?} and left {}",
                again.code,
                if fresh.exists() {
                    "the folder"
                } else {
                    "nothing"
                }
            ));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\n--- output:\n{all}", wrong.join("; ")))
    }
}

#[test]
fn every_malformed_input_is_refused_with_the_field_named() {
    let cases = cases();
    assert!(cases.len() >= 50, "the corpus holds {} cases", cases.len());
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let failures = std::sync::Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(case) = cases.get(i) else { break };
                    let dir = scratch.path().join(i.to_string());
                    std::fs::create_dir_all(&dir).expect("a folder");
                    let file = match case.file.strip_prefix("generated:") {
                        Some(name) => generated(name, &dir),
                        None => corpus().join(&case.file),
                    };
                    assert!(
                        file.exists(),
                        "{} is in cases.tsv but not in the corpus",
                        case.file
                    );
                    for command in &case.commands {
                        let scratch = dir.join(command);
                        if let Err(why) = check(case, command, &file, &scratch) {
                            failures
                                .lock()
                                .expect("not poisoned")
                                .push(format!("{} through {command}: {why}", case.file));
                        }
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().expect("not poisoned");
    assert!(
        failures.is_empty(),
        "{} of {} cases answered wrongly:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn the_index_lists_every_file_of_the_corpus() {
    let listed: Vec<String> = cases().into_iter().map(|c| c.file).collect();
    for entry in std::fs::read_dir(corpus()).expect("the corpus") {
        let name = entry.expect("an entry").file_name();
        let name = name.to_string_lossy();
        if name == "cases.tsv" || name == "base" || name == "README.md" {
            continue;
        }
        assert!(
            listed.iter().any(|l| *l == name),
            "{name} is not in cases.tsv"
        );
    }
}

#[test]
fn the_base_documents_are_valid() {
    // Each case breaks one thing of a valid document; the documents themselves pass.
    let base = corpus().join("base");
    let files = [
        "factory.yaml",
        "workspace.yaml",
        "jupyter.yaml",
        "site.yaml",
    ];
    let paths: Vec<PathBuf> = files.iter().map(|f| base.join(f)).collect();
    let mut args: Vec<&std::ffi::OsStr> = vec!["validate".as_ref()];
    args.extend(paths.iter().map(|p| p.as_os_str()));
    let run = fabbrica(&args).expect("no hang");
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    let site = base.join("site.yaml");
    let plan = fabbrica(&["plan".as_ref(), site.as_os_str()]).expect("no hang");
    assert_eq!(plan.code, Some(0), "{}", plan.stderr);
    let out = tempfile::tempdir().expect("a temporary directory");
    let out = out.path().join("site");
    let render = fabbrica(&[
        "blueprint".as_ref(),
        "render".as_ref(),
        site.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ])
    .expect("no hang");
    assert_eq!(render.code, Some(0), "{}", render.stderr);
    assert!(out.join("README.md").exists());
}
