//! kwok plays the kubelet of fake nodes, so that on the test control plane a Deployment's
//! pods are scheduled, run and turn Ready, the Deployment becomes Available and its
//! Service gets ready EndpointSlices — all without a container runtime. Argo CD's health
//! checks and anything that waits for a rollout then see what they would see on a real
//! cluster.
//!
//! What kwok does to nodes and pods is the stages file `tests/assets/kwok-stages.yaml`:
//! pods turn Ready at once; a pod labelled [`NEVER_READY_LABEL`] runs but never turns
//! Ready (a readiness probe that keeps failing); a Job's pods complete; deleted pods go.
//! Nodes stay Ready through the Lease kwok renews.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

use crate::control_plane::write_file;
use crate::error::{Error, Result};
use crate::process::{ProcessGroup, block_on};
use crate::{ControlPlane, FIELD_MANAGER, KWOK_USER, assets};

/// The annotation that hands a node to kwok (`--manage-nodes-with-annotation-selector`).
pub const FAKE_NODE_ANNOTATION: (&str, &str) = ("kwok.x-k8s.io/node", "fake");
/// A pod with this label runs but never turns Ready, like one whose readiness probe keeps
/// failing: its Deployment never becomes Available, its EndpointSlice endpoint is not
/// ready. Put it on a Deployment's pod template.
pub const NEVER_READY_LABEL: (&str, &str) = ("testmesh.io/never-ready", "true");
/// The fake nodes [`Kwok::start`] creates.
pub const NODE_NAMES: [&str; 2] = ["kwok-node-0", "kwok-node-1"];
/// What each fake node offers the scheduler.
pub const NODE_ALLOCATABLE: [(&str, &str); 3] =
    [("cpu", "16"), ("memory", "64Gi"), ("pods", "110")];
/// How long a node's Lease is valid; kwok renews it well within.
const NODE_LEASE_DURATION: Duration = Duration::from_secs(40);
/// Pod IPs; apart from the Service range (10.0.0.0/24) so addresses read unambiguously.
const POD_CIDR: &str = "10.244.0.0/16";
/// The InternalIP of every fake node (and so their pods' hostIP); nothing connects to it.
const NODE_IP: &str = "10.240.0.1";
const STAGES: &str = include_str!("../../assets/kwok-stages.yaml");
/// The taint the API server puts on every new node until something reports it Ready;
/// no node lifecycle controller runs here to lift it.
const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
const NODES_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running kwok managing [`NODE_NAMES`] on a control plane. At most one per control
/// plane: two would fight over the same nodes and pods.
///
/// Dropping it kills kwok (the nodes stay and turn stale); the shared one lives as long
/// as the test process.
#[derive(Debug)]
pub struct Kwok {
    processes: ProcessGroup,
    startup_duration: Duration,
}

impl Kwok {
    /// Starts kwok against `control_plane` as [`KWOK_USER`], creates the fake nodes and
    /// blocks until they are Ready and schedulable. Logs go to the control plane's log
    /// directory (`kwok.log`).
    pub fn start(control_plane: &ControlPlane) -> Result<Kwok> {
        let started = Instant::now();
        let kwok = assets::find_binary("kwok", false)?;
        let work_dir = control_plane.run_dir().join("kwok");
        std::fs::create_dir_all(&work_dir)
            .map_err(|e| Error::io(format!("create {}", work_dir.display()), e))?;
        let processes = ProcessGroup::new("kwok", control_plane.log_dir(), &work_dir)?;
        let stages = work_dir.join("stages.yaml");
        write_file(&stages, STAGES)?;

        let args = vec![
            format!(
                "--kubeconfig={}",
                control_plane.user_kubeconfig_path(KWOK_USER)?.display()
            ),
            format!("--config={}", stages.display()),
            format!(
                "--manage-nodes-with-annotation-selector={}={}",
                FAKE_NODE_ANNOTATION.0, FAKE_NODE_ANNOTATION.1
            ),
            format!(
                "--node-lease-duration-seconds={}",
                NODE_LEASE_DURATION.as_secs()
            ),
            format!("--cidr={POD_CIDR}"),
            format!("--node-ip={NODE_IP}"),
            // No --node-port or --server-address: kwok then serves nothing (no logs,
            // exec or metrics endpoints), so it needs no port.
        ];
        processes.spawn("kwok", &kwok, &args, |command| {
            // kwok reads ~/.kwok/kwok.yaml unless its work directory is elsewhere.
            command.env("KWOK_WORKDIR", &work_dir);
        })?;

        let config = control_plane.admin_config();
        block_on(async {
            let client = Client::try_from(config)?;
            create_nodes(&client).await?;
            processes
                .wait_for("fake nodes Ready", NODES_READY_TIMEOUT, || {
                    nodes_schedulable(&client)
                })
                .await
        })??;

        let startup_duration = started.elapsed();
        tracing::info!(elapsed = ?startup_duration, "kwok ready");
        Ok(Kwok {
            processes,
            startup_duration,
        })
    }

    /// kwok for [`ControlPlane::shared`], started on first use; it lives as long as the
    /// test process. Panics with kwok's log if it cannot start.
    pub fn shared() -> &'static Kwok {
        static SHARED: OnceLock<Result<Kwok, String>> = OnceLock::new();
        match SHARED.get_or_init(|| Kwok::start(ControlPlane::shared()).map_err(|e| e.to_string()))
        {
            Ok(kwok) => kwok,
            Err(message) => panic!("failed to start kwok: {message}"),
        }
    }

    /// Wall-clock time [`Kwok::start`] took until the nodes were Ready.
    pub fn startup_duration(&self) -> Duration {
        self.startup_duration
    }

    /// `Some(description)` if kwok has exited.
    pub fn exited(&self) -> Option<String> {
        self.processes.exited()
    }
}

/// Creates (or re-applies) the fake nodes and writes their capacity.
async fn create_nodes(client: &Client) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let resources: BTreeMap<&str, &str> = NODE_ALLOCATABLE.into_iter().collect();
    for name in NODE_NAMES {
        let node = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": { FAKE_NODE_ANNOTATION.0: FAKE_NODE_ANNOTATION.1 },
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
            },
        });
        let params = PatchParams::apply(FIELD_MANAGER).force();
        nodes.patch(name, &params, &Patch::Apply(&node)).await?;
        let status = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "status": { "capacity": resources, "allocatable": resources },
        });
        nodes
            .patch_status(name, &params, &Patch::Apply(&status))
            .await?;
    }
    Ok(())
}

/// Every fake node is Ready and carries no not-ready taint. The API server taints a new
/// node `node.kubernetes.io/not-ready`; with no node lifecycle controller here, the taint
/// is lifted once kwok has reported the node Ready.
async fn nodes_schedulable(client: &Client) -> Result<bool, String> {
    let nodes: Api<Node> = Api::all(client.clone());
    for name in NODE_NAMES {
        let node = nodes.get(name).await.map_err(|e| e.to_string())?;
        let ready = node
            .status
            .as_ref()
            .and_then(|status| status.conditions.as_ref())
            .is_some_and(|conditions| {
                conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            });
        if !ready {
            return Ok(false);
        }
        let taints = node
            .spec
            .as_ref()
            .and_then(|spec| spec.taints.clone())
            .unwrap_or_default();
        if taints.iter().any(|taint| taint.key == NOT_READY_TAINT) {
            let kept: Vec<_> = taints
                .into_iter()
                .filter(|taint| taint.key != NOT_READY_TAINT)
                .collect();
            let patch = json!({ "spec": { "taints": kept } });
            nodes
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| e.to_string())?;
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stages_are_yaml_kwok_can_read() {
        let stages: Vec<serde_json::Value> =
            serde_saphyr::from_multiple(STAGES).expect("stages YAML");
        let names: Vec<&str> = stages
            .iter()
            .map(|stage| stage["metadata"]["name"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(
            names,
            [
                "node-initialize",
                "node-heartbeat-with-lease",
                "pod-ready",
                "pod-running-never-ready",
                "pod-complete",
                "pod-delete"
            ]
        );
        assert!(STAGES.contains(NEVER_READY_LABEL.0));
    }
}
