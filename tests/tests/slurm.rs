//! Slurm reads the `topology.conf` fabbrica writes. Debian's `slurmctld` starts on free loopback
//! ports with the tree plugin, the site's nodes and one partition per pool, and the file as the
//! operator's topology ConfigMap holds it (operator run in-process against the control plane) or
//! as `fabbrica blueprint render` writes it; `scontrol show topology` must then list every switch
//! with the children it was generated with, every leaf the nodes the site's `topology.json` puts
//! under it, and a root above all the site's nodes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use fabbrica_crds::v1alpha1::{Factory, GpuSystem};
use fabbrica_operator::Settings;
use fabbrica_operator::clock::SystemClock;
use fabbrica_operator::http::Readiness;
use fabbrica_operator::metrics::Metrics;
use fabbrica_tests::{
    client, eventually, fabbrica, gpu_node, install_crds, register_gpu_node, scratch_dir, tool,
    unique_name,
};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const RUN_LABEL: &str = "test.fabbrica.io/run";
const WAIT: Duration = Duration::from_secs(60);

/// Expands a Slurm hostlist (`su01-n[01-03,07],spine`) into its names. Commas inside brackets
/// separate ranges, outside them names; a range keeps the zero padding of its first number.
fn expand(hostlist: &str) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    let mut items = Vec::new();
    for (i, c) in hostlist.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&hostlist[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&hostlist[start..]);
    for item in items.into_iter().filter(|i| !i.is_empty()) {
        let Some((prefix, rest)) = item.split_once('[') else {
            names.push(item.to_owned());
            continue;
        };
        let (ranges, suffix) = rest
            .split_once(']')
            .with_context(|| format!("unclosed bracket in hostlist {item}"))?;
        for range in ranges.split(',') {
            let (first, last) = range.split_once('-').unwrap_or((range, range));
            let width = first.len();
            let (a, b): (u64, u64) = (first.parse()?, last.parse()?);
            ensure!(a <= b, "range {range} runs backwards in {item}");
            names.extend((a..=b).map(|n| format!("{prefix}{n:0width$}{suffix}")));
        }
    }
    Ok(names)
}

fn expand_set(hostlist: Option<&String>) -> anyhow::Result<BTreeSet<String>> {
    Ok(match hostlist {
        Some(list) => expand(list)?.into_iter().collect(),
        None => BTreeSet::new(),
    })
}

/// One switch: its `key=value` fields as Slurm prints them or as a `topology.conf` line holds them.
type Switch = BTreeMap<String, String>;

/// The `SwitchName=` lines of a topology listing or file, by switch name; comments skipped.
fn switches(text: &str) -> anyhow::Result<BTreeMap<String, Switch>> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let fields: Switch = line
            .split_whitespace()
            .filter_map(|f| f.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let name = fields
            .get("SwitchName")
            .with_context(|| format!("a line without SwitchName: {line}"))?
            .clone();
        ensure!(
            out.insert(name.clone(), fields).is_none(),
            "switch {name} twice"
        );
    }
    Ok(out)
}

/// Debian's `slurmctld` in the foreground, on free loopback ports, with its state, logs and
/// configuration in one folder; stopped when dropped.
struct Slurmctld {
    dir: PathBuf,
    child: Child,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn user() -> anyhow::Result<String> {
    let out = Command::new("id").arg("-un").output()?;
    ensure!(out.status.success(), "id -un failed");
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

impl Slurmctld {
    /// Starts a controller for `partitions` (name, nodes) with `topology` as its `topology.conf`,
    /// and waits until it answers.
    fn start(
        dir: &Path,
        partitions: &[(String, Vec<String>)],
        topology: &str,
    ) -> anyhow::Result<Self> {
        let slurmctld = tool("slurmctld")?;
        let dir = dir.join("slurm");
        std::fs::create_dir_all(dir.join("state"))?;
        let (port, slurmd_port) = (free_port()?, free_port()?);
        // The controller resolves every node's address at start: all are this machine.
        let nodes: BTreeSet<&String> = partitions.iter().flat_map(|(_, n)| n).collect();
        let nodes: Vec<&String> = nodes.into_iter().collect();
        let mut conf = format!(
            "ClusterName=fabbrica\nSlurmctldHost=localhost\nSlurmctldPort={port}\nSlurmdPort={slurmd_port}\n\
             SlurmUser={user}\nAuthType=auth/none\nCredType=cred/none\nMpiDefault=none\n\
             MailProg=/bin/true\nProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n\
             SelectType=select/cons_tres\nTopologyPlugin=topology/tree\n\
             StateSaveLocation={state}\nSlurmdSpoolDir={state}/slurmd\n\
             SlurmctldPidFile={dir}/slurmctld.pid\nSlurmctldLogFile={dir}/slurmctld.log\n",
            user = user()?,
            state = dir.join("state").display(),
            dir = dir.display(),
        );
        for chunk in nodes.chunks(64) {
            let names: Vec<&str> = chunk.iter().map(|n| n.as_str()).collect();
            conf.push_str(&format!(
                "NodeName={} NodeAddr=127.0.0.1 CPUs=1 State=UNKNOWN\n",
                names.join(",")
            ));
        }
        for (i, (name, members)) in partitions.iter().enumerate() {
            conf.push_str(&format!(
                "PartitionName={name} Nodes={} Default={} State=UP\n",
                members.join(","),
                if i == 0 { "YES" } else { "NO" }
            ));
        }
        std::fs::write(dir.join("slurm.conf"), conf)?;
        std::fs::write(dir.join("topology.conf"), topology)?;
        let child = Command::new(&slurmctld)
            .args(["-D", "-i", "-f"])
            .arg(dir.join("slurm.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("slurmctld.out"))?)
            .spawn()
            .with_context(|| format!("starting {}", slurmctld.display()))?;
        let mut slurm = Self { dir, child };
        let deadline = Instant::now() + WAIT;
        loop {
            if slurm.scontrol(&["ping"]).is_ok() {
                return Ok(slurm);
            }
            if let Some(status) = slurm.child.try_wait()? {
                bail!("slurmctld exited ({status}): {}", slurm.log());
            }
            if Instant::now() > deadline {
                bail!("slurmctld did not answer in {WAIT:?}: {}", slurm.log());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn log(&self) -> String {
        let out = std::fs::read_to_string(self.dir.join("slurmctld.out")).unwrap_or_default();
        let lines: Vec<&str> = out.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn scontrol(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new("scontrol")
            .args(args)
            .env("SLURM_CONF", self.dir.join("slurm.conf"))
            .output()
            .context("running scontrol (Debian package slurm-client)")?;
        ensure!(
            out.status.success(),
            "scontrol {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?)
    }
}

impl Drop for Slurmctld {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Slurm on `conf` and checks what it read: every generated switch and no other, each
/// with the same node and switch children; each leaf in `leaves` with exactly its nodes; and one
/// root whose nodes are all of `partitions`' nodes (Slurm derives them through the tree).
fn assert_slurm_reads(
    dir: &Path,
    conf: &str,
    partitions: &[(String, Vec<String>)],
    leaves: &BTreeMap<String, BTreeSet<String>>,
) -> anyhow::Result<()> {
    let generated = switches(conf)?;
    ensure!(!generated.is_empty(), "no switch in the topology:\n{conf}");
    let slurm = Slurmctld::start(dir, partitions, conf)?;
    let listed = switches(&slurm.scontrol(&["show", "topology"])?)?;
    ensure!(
        listed.keys().eq(generated.keys()),
        "Slurm lists the switches {:?}, fabbrica wrote {:?}; Slurm's log:\n{}",
        listed.keys().collect::<Vec<_>>(),
        generated.keys().collect::<Vec<_>>(),
        slurm.log()
    );
    for (name, switch) in &generated {
        let seen = &listed[name];
        for key in ["Switches", "Nodes"] {
            // Slurm lists every node below an upper switch; fabbrica writes nodes on leaves only.
            if key == "Nodes" && !switch.contains_key(key) {
                continue;
            }
            let (slurm_reads, written) = (expand_set(seen.get(key))?, expand_set(switch.get(key))?);
            ensure!(
                slurm_reads == written,
                "{key} of switch {name}: Slurm reads {slurm_reads:?}, fabbrica wrote {written:?}"
            );
        }
    }
    for (leaf, nodes) in leaves {
        let seen = listed
            .get(leaf)
            .with_context(|| format!("Slurm lists no switch {leaf}"))?;
        ensure!(
            seen.get("Level").map(String::as_str) == Some("0"),
            "{leaf} is not a leaf for Slurm: {seen:?}"
        );
        let slurm_reads = expand_set(seen.get("Nodes"))?;
        ensure!(
            &slurm_reads == nodes,
            "nodes under {leaf}: Slurm reads {slurm_reads:?}, topology.json says {nodes:?}"
        );
    }
    let all: BTreeSet<String> = partitions.iter().flat_map(|(_, n)| n.clone()).collect();
    let level = |s: &Switch| s.get("Level").and_then(|l| l.parse::<u32>().ok());
    let top = listed.values().filter_map(level).max();
    let roots: Vec<&Switch> = listed.values().filter(|s| level(s) == top).collect();
    ensure!(roots.len() == 1, "more than one root switch: {roots:?}");
    let reached = expand_set(roots[0].get("Nodes"))?;
    ensure!(
        reached == all,
        "the root reaches {} of the site's {} nodes; unreached: {:?}",
        reached.len(),
        all.len(),
        all.difference(&reached).collect::<Vec<_>>()
    );
    Ok(())
}

/// `blueprint render`'s topology.conf, for a two-tier and a three-tier site; the nodes and the
/// leaves come from the same render's topology.json.
#[test]
fn slurm_reads_the_rendered_sites_topology() -> anyhow::Result<()> {
    for example in ["ai-factory", "gigafactory"] {
        let dir = scratch_dir(&format!("slurm-{example}"))?;
        let out = dir.join("site");
        let code = fabbrica(&[
            "blueprint",
            "render",
            "--example",
            example,
            "--out",
            out.to_str().context("scratch path is not UTF-8")?,
        ])?;
        assert_eq!(code, ExitCode::SUCCESS, "{example}");
        let conf = std::fs::read_to_string(out.join("topology.conf"))?;
        let json: Value = serde_json::from_slice(&std::fs::read(out.join("topology.json"))?)?;
        let mut leaves = BTreeMap::new();
        for unit in json["units"].as_array().context("topology.json units")? {
            let nodes: BTreeSet<String> = unit["nodes"]
                .as_array()
                .context("a unit's nodes")?
                .iter()
                .filter_map(|n| n.as_str().map(str::to_owned))
                .collect();
            leaves.insert(unit["name"].as_str().unwrap_or_default().to_owned(), nodes);
        }
        let nodes: Vec<String> = leaves.values().flatten().cloned().collect();
        assert!(nodes.len() > 100, "{example}: {} nodes", nodes.len());
        assert_slurm_reads(&dir, &conf, &[("gpu".to_owned(), nodes)], &leaves)
            .with_context(|| format!("{example}'s topology.conf"))?;
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}

/// The operator's topology ConfigMap for a Factory of two pools on 72 simulated Nodes: two
/// scalable units of 40 by node order, the first with two leaf groups. The B200 Nodes have
/// fully qualified names, as many clusters name their Nodes.
#[tokio::test]
async fn slurm_reads_the_operators_topology() -> anyhow::Result<()> {
    let client = client().await?;
    install_crds(&client).await?;
    let run = unique_name("slurm");
    let namespace = unique_name("fabbrica-slurm");
    let namespaces = Api::<Namespace>::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": namespace}}))?,
        )
        .await?;
    let pools = [
        ("h100", GpuSystem::DgxH100, 40, ""),
        ("b200", GpuSystem::DgxB200, 32, ".rack1.fabbrica.test"),
    ];
    let mut partitions = Vec::new();
    let node_api = Api::<Node>::all(client.clone());
    for (pool, system, count, domain) in pools {
        let names: Vec<String> = (0..count)
            .map(|i| format!("{run}-dgx-{pool}-{i:03}{domain}"))
            .collect();
        futures::stream::iter(names.clone())
            .map(|name| {
                let api = node_api.clone();
                let run = run.clone();
                async move {
                    let labels = BTreeMap::from([
                        (RUN_LABEL.to_owned(), run),
                        ("gpu".to_owned(), pool.to_owned()),
                    ]);
                    register_gpu_node(&api, &gpu_node(&name, system, 0, labels)?).await
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<Vec<()>>>()?;
        partitions.push((pool.to_owned(), names));
    }

    let settings = Settings {
        namespace: namespace.clone(),
        gpu_operator_namespace: namespace.clone(),
        factory_selector: Some(format!("{RUN_LABEL}={run}")),
        debounce: Duration::from_millis(200),
        ..Settings::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let operator = tokio::spawn(fabbrica_operator::run(
        client.clone(),
        settings,
        Metrics::new(),
        Arc::new(Readiness::default()),
        Arc::new(SystemClock),
        async move {
            let _ = stopped.await;
        },
    ));
    let pool = |name: &str, system: &str, count: usize| {
        json!({"name": name, "nodeSelector": {RUN_LABEL: run, "gpu": name}, "system": system,
            "expectedNodes": count})
    };
    let factory = json!({
        "apiVersion": "fabbrica.io/v1alpha1",
        "kind": "Factory",
        "metadata": {"name": run, "labels": {RUN_LABEL: run}},
        "spec": {
            "site": {"name": "slurm", "country": "IT", "tier": "aiFactory"},
            "gpuPools": [pool("h100", "dgx-h100", 40), pool("b200", "dgx-b200", 32)],
            "fabric": {"type": "infiniband", "railsPerNode": 8, "linkSpeed": "400G",
                "topology": {"source": "nodeOrder", "nodesPerScalableUnit": 40}},
            "storageTiers": [{"name": "scratch", "role": "scratch", "provisioner": "csi.example.com",
                "capacity": "1Pi"}],
        },
    });
    let factories = Api::<Factory>::all(client.clone());
    factories
        .patch(
            &run,
            &PatchParams::apply("fabbrica-tests").force(),
            &Patch::Apply(&factory),
        )
        .await?;
    let maps = Api::<ConfigMap>::namespaced(client.clone(), &namespace);
    let topology_name = format!("{run}-topology");
    // Waits until every Node is placed: the ConfigMap is written as soon as the first are.
    let data = eventually(
        "the topology ConfigMap places all 72 Nodes",
        WAIT,
        || async {
            let Some(map) = maps.get_opt(&topology_name).await? else {
                return Ok(None);
            };
            let data = map.data.unwrap_or_default();
            let json: Value = serde_json::from_str(data.get("topology.json").map_or("{}", |s| s))?;
            let placed: usize = json["scalableUnits"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|u| u["leafGroups"].as_array().into_iter().flatten())
                .map(|g| g["nodes"].as_array().map_or(0, Vec::len))
                .sum();
            Ok((placed == 72).then_some(data))
        },
    )
    .await?;

    let json: Value = serde_json::from_str(&data["topology.json"])?;
    let mut leaves = BTreeMap::new();
    for unit in json["scalableUnits"].as_array().into_iter().flatten() {
        for group in unit["leafGroups"].as_array().into_iter().flatten() {
            let nodes: BTreeSet<String> = group["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n.as_str().map(str::to_owned))
                .collect();
            leaves.insert(group["name"].as_str().unwrap_or_default().to_owned(), nodes);
        }
    }
    let dir = scratch_dir("slurm-operator")?;
    let result = if leaves.keys().eq(["su001-lg0", "su001-lg1", "su002-lg0"]) {
        // Slurm is waited for on a blocking thread, so the operator keeps running meanwhile.
        let (dir, conf, partitions) = (
            dir.clone(),
            data["topology.conf"].clone(),
            partitions.clone(),
        );
        tokio::task::spawn_blocking(move || assert_slurm_reads(&dir, &conf, &partitions, &leaves))
            .await?
    } else {
        Err(anyhow::anyhow!(
            "leaf groups of 72 Nodes, 40 to a unit: {:?}",
            leaves.keys()
        ))
    };

    // The Factory's finalizer is the operator's: it must still run until the Factory is gone.
    factories.delete(&run, &DeleteParams::default()).await?;
    eventually("the Factory is gone", WAIT, || async {
        Ok(factories.get_opt(&run).await?.is_none().then_some(()))
    })
    .await?;
    let _ = stop.send(());
    tokio::time::timeout(WAIT, operator)
        .await
        .context("operator did not stop")???;
    for (_, names) in &partitions {
        for name in names {
            node_api.delete(name, &DeleteParams::default()).await?;
        }
    }
    namespaces
        .delete(&namespace, &DeleteParams::default())
        .await?;
    result?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn expand_reads_slurm_hostlists() -> anyhow::Result<()> {
    assert_eq!(
        expand("su01-n[01-03,10],spine,g[1-2]x")?,
        [
            "su01-n01", "su01-n02", "su01-n03", "su01-n10", "spine", "g1x", "g2x"
        ]
    );
    assert!(expand("a[3-1]").is_err());
    Ok(())
}
