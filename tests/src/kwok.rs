//! A kwok of a test's own: the simulated kubelet of the Nodes annotated
//! `kwok.x-k8s.io/node=NAME`, with kwok's own stages at the heartbeat rate the test chooses
//! (`tests/control-plane kwok-config`), on the running control plane. The control plane's kwok
//! leaves those Nodes alone: it plays only the Nodes annotated `fake`.

use std::process::{Child, Command, Stdio};

use anyhow::Context;

use crate::{KWOK_NODE_ANNOTATION, kubeconfig_path, repo_root, scratch_dir};

/// A running kwok; stopped when dropped.
#[derive(Debug)]
pub struct Kubelets {
    name: String,
    child: Child,
}

impl Kubelets {
    /// Starts kwok for the Nodes annotated `kwok.x-k8s.io/node=name`: it reports them Ready,
    /// renews each one's lease every `lease_seconds / 4` and reports each one's status every
    /// `status_seconds` (as a kubelet does, with nothing changed but the heartbeat times).
    pub fn start(name: &str, lease_seconds: u32, status_seconds: f64) -> anyhow::Result<Self> {
        let script = repo_root().join("tests/control-plane");
        let folders = Command::new(&script)
            .arg("build")
            .stderr(Stdio::inherit())
            .output()
            .context("running tests/control-plane build")?;
        anyhow::ensure!(folders.status.success(), "tests/control-plane build failed");
        let kwok = String::from_utf8(folders.stdout)?
            .lines()
            .nth(2)
            .map(|folder| std::path::Path::new(folder).join("kwok"))
            .context("tests/control-plane build names kwok's folder third")?;
        let config = Command::new(&script)
            .arg("kwok-config")
            .env("FABBRICA_KWOK_STATUS_SECONDS", status_seconds.to_string())
            .stderr(Stdio::inherit())
            .output()
            .context("running tests/control-plane kwok-config")?;
        anyhow::ensure!(
            config.status.success(),
            "tests/control-plane kwok-config failed"
        );
        let dir = scratch_dir(&format!("kwok-{name}"))?;
        std::fs::write(dir.join("kwok.yaml"), config.stdout)?;
        let child = Command::new(&kwok)
            .arg(format!("--config={}", dir.join("kwok.yaml").display()))
            .arg(format!("--kubeconfig={}", kubeconfig_path().display()))
            .arg("--manage-all-nodes=false")
            .arg(format!(
                "--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}={name}"
            ))
            .arg(format!("--node-lease-duration-seconds={lease_seconds}"))
            .args(["--cidr=10.245.0.0/16", "--node-ip=10.0.0.2"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("kwok.log"))?)
            .spawn()
            .with_context(|| format!("starting {}", kwok.display()))?;
        Ok(Self {
            name: name.to_owned(),
            child,
        })
    }

    /// The annotation value that hands a Node to this kwok: set it as
    /// [`KWOK_NODE_ANNOTATION`] before [`crate::register_ready_node`].
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Kubelets {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
