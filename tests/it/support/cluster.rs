//! The controllers the test kube-apiserver lacks, played by patching `status`: the
//! Deployment and StatefulSet controllers (status catches up with spec) and Velero
//! (a Restore goes `InProgress`, then to a final phase the test chooses, possibly only
//! once the test allows it).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use serde_json::{Value as Json, json};

use super::KubeApiServer;

/// The `velero.io/v1` resource `kind` (`plural` in URLs).
pub fn velero_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("velero.io", "v1", kind), plural)
}

/// One pass of the Deployment and StatefulSet controllers over `namespace`: every
/// workload's status catches up with its spec, as once its pods run.
pub async fn settle_workloads(client: &kube::Client, namespace: &str) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    if let Ok(list) = deployments.list(&ListParams::default()).await {
        for deployment in list.items {
            let generation = deployment.metadata.generation.unwrap_or_default();
            let replicas = deployment.spec.as_ref().and_then(|spec| spec.replicas).unwrap_or(1);
            let status = deployment.status.clone().unwrap_or_default();
            let settled = status.observed_generation == Some(generation)
                && status.ready_replicas.unwrap_or_default() == replicas
                && status.replicas.unwrap_or_default() == replicas;
            if !settled {
                let name = deployment.metadata.name.clone().unwrap_or_default();
                let patch = json!({ "status": {
                    "observedGeneration": generation, "replicas": replicas, "readyReplicas": replicas,
                    "availableReplicas": replicas, "updatedReplicas": replicas,
                }});
                let _ = deployments.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await;
            }
        }
    }
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    if let Ok(list) = sets.list(&ListParams::default()).await {
        for set in list.items {
            let generation = set.metadata.generation.unwrap_or_default();
            let replicas = set.spec.as_ref().and_then(|spec| spec.replicas).unwrap_or(1);
            let status = set.status.clone().unwrap_or_default();
            let settled = status.observed_generation == Some(generation)
                && status.ready_replicas.unwrap_or_default() == replicas
                && status.replicas == replicas;
            if !settled {
                let name = set.metadata.name.clone().unwrap_or_default();
                let patch = json!({ "status": {
                    "observedGeneration": generation, "replicas": replicas, "readyReplicas": replicas,
                    "currentReplicas": replicas, "updatedReplicas": replicas,
                }});
                let _ = sets.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await;
            }
        }
    }
}

/// Plays the workload controllers over one namespace and Velero over another, on a
/// thread of its own (so a test may block on the `dr-plan` binary), until dropped.
pub struct ClusterPlayer {
    stop: Arc<AtomicBool>,
    finish_restores: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ClusterPlayer {
    /// Restores go `InProgress` and then to `final_phase` (a Restore's `status`).
    pub fn start(
        server: &'static KubeApiServer,
        namespace: &str,
        velero_namespace: &str,
        final_phase: Json,
    ) -> ClusterPlayer {
        Self::start_with(server, namespace, velero_namespace, final_phase, true)
    }

    /// Like [`ClusterPlayer::start`], but restores stay `InProgress` until
    /// [`ClusterPlayer::finish_restores`].
    pub fn start_holding_restores(
        server: &'static KubeApiServer,
        namespace: &str,
        velero_namespace: &str,
        final_phase: Json,
    ) -> ClusterPlayer {
        Self::start_with(server, namespace, velero_namespace, final_phase, false)
    }

    /// Lets restores reach their final phase.
    pub fn finish_restores(&self) {
        self.finish_restores.store(true, Ordering::Relaxed);
    }

    fn start_with(
        server: &'static KubeApiServer,
        namespace: &str,
        velero_namespace: &str,
        final_phase: Json,
        finish: bool,
    ) -> ClusterPlayer {
        let stop = Arc::new(AtomicBool::new(false));
        let finish_restores = Arc::new(AtomicBool::new(finish));
        let (stopping, finishing) = (Arc::clone(&stop), Arc::clone(&finish_restores));
        let (namespace, velero_namespace) = (namespace.to_owned(), velero_namespace.to_owned());
        let thread = std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let client = server.client().await;
                let restores: Api<DynamicObject> = Api::namespaced_with(
                    client.clone(),
                    &velero_namespace,
                    &velero_resource("Restore", "restores"),
                );
                while !stopping.load(Ordering::Relaxed) {
                    settle_workloads(&client, &namespace).await;
                    if let Ok(list) = restores.list(&ListParams::default()).await {
                        for restore in list.items {
                            let phase = restore
                                .data
                                .pointer("/status/phase")
                                .and_then(Json::as_str)
                                .unwrap_or_default();
                            let name = restore.metadata.name.clone().unwrap_or_default();
                            let next = match phase {
                                "" => json!({ "phase": "InProgress" }),
                                "InProgress" if finishing.load(Ordering::Relaxed) => final_phase.clone(),
                                _ => continue,
                            };
                            let patch = json!({ "status": next });
                            let _ = restores
                                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                                .await;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
        });
        ClusterPlayer { stop, finish_restores, thread: Some(thread) }
    }
}

impl Drop for ClusterPlayer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
