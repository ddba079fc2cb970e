//! Deployments and Services for tests that need workloads to run — kwok makes their pods
//! Ready ([`crate::kwok`]) and Argo CD deploys them from Git ([`crate::git`]) — among them
//! the product documentation's example: `user-service` and `product-service` on 8080 for
//! a review environment, `order-service` on 8083 in `staging`.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ListParams;
use kube::runtime::wait::await_condition;
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::error::{Error, Result};

/// Port of the example's `user-service` and `product-service`.
pub const REVIEW_SERVICE_PORT: u16 = 8080;
/// Port of the example's `order-service`.
pub const STAGING_SERVICE_PORT: u16 = 8083;
/// Directory of the review environment's manifests in [`product_example_files`].
pub const REVIEW_PATH: &str = "review";
/// Directory of `staging`'s manifests in [`product_example_files`].
pub const STAGING_PATH: &str = "staging";

/// One service of a test workload: a Deployment of `replicas` pods running `image` and a
/// Service in front of them on `port`, both named `name` and selecting `app=<name>`.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Name of the Deployment and the Service.
    pub name: String,
    /// Container image (kwok runs none, so any name does).
    pub image: String,
    /// Port of the Service and the container.
    pub port: u16,
    /// Pods of the Deployment.
    pub replicas: u32,
    /// Extra labels on the pod template, e.g. [`crate::kwok::NEVER_READY_LABEL`].
    pub pod_labels: Vec<(String, String)>,
}

impl Workload {
    /// One replica of `image` serving `port`.
    pub fn new(name: &str, image: &str, port: u16) -> Workload {
        Workload {
            name: name.to_owned(),
            image: image.to_owned(),
            port,
            replicas: 1,
            pod_labels: Vec::new(),
        }
    }

    /// With `replicas` pods.
    pub fn replicas(mut self, replicas: u32) -> Workload {
        self.replicas = replicas;
        self
    }

    /// With pods that run but never turn Ready ([`crate::kwok::NEVER_READY_LABEL`]).
    pub fn never_ready(mut self) -> Workload {
        let (key, value) = crate::kwok::NEVER_READY_LABEL;
        self.pod_labels.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The Deployment.
    pub fn deployment(&self) -> Value {
        let mut pod_labels = serde_json::Map::new();
        pod_labels.insert("app".to_owned(), json!(self.name));
        for (key, value) in &self.pod_labels {
            pod_labels.insert(key.clone(), json!(value));
        }
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": { "name": self.name, "labels": { "app": self.name } },
            "spec": {
                "replicas": self.replicas,
                "selector": { "matchLabels": { "app": self.name } },
                "template": {
                    "metadata": { "labels": pod_labels },
                    "spec": {
                        "containers": [{
                            "name": self.name,
                            "image": self.image,
                            "ports": [{ "name": "http", "containerPort": self.port }],
                        }],
                    },
                },
            },
        })
    }

    /// The Service.
    pub fn service(&self) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": { "name": self.name, "labels": { "app": self.name } },
            "spec": {
                "selector": { "app": self.name },
                "ports": [{ "name": "http", "port": self.port, "targetPort": "http" }],
            },
        })
    }

    /// The Deployment and the Service as one YAML stream (JSON documents are YAML),
    /// for [`crate::apply_yaml`] or a file in a Git repository.
    pub fn yaml(&self) -> String {
        format!("---\n{}\n---\n{}\n", self.deployment(), self.service())
    }
}

/// The product documentation's example, one YAML file per service:
/// `review/user-service.yaml` and `review/product-service.yaml` (images
/// `myrepo/<name>:pr-123`, port 8080), `staging/order-service.yaml`
/// (`myrepo/order-service:main`, port 8083). Each directory is an Argo CD source path.
pub fn product_example_files() -> Vec<(String, String)> {
    let review = ["user-service", "product-service"].map(|name| {
        (
            format!("{REVIEW_PATH}/{name}.yaml"),
            Workload::new(name, &format!("myrepo/{name}:pr-123"), REVIEW_SERVICE_PORT).yaml(),
        )
    });
    let staging = (
        format!("{STAGING_PATH}/order-service.yaml"),
        Workload::new(
            "order-service",
            "myrepo/order-service:main",
            STAGING_SERVICE_PORT,
        )
        .yaml(),
    );
    review.into_iter().chain([staging]).collect()
}

/// Waits until the Deployment `namespace/name` is Available with all its replicas
/// ready, and returns it.
pub async fn wait_deployment_available(
    client: &Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> Result<Deployment> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let available = tokio::time::timeout(
        timeout,
        await_condition(deployments, name, |deployment: Option<&Deployment>| {
            deployment.is_some_and(is_available)
        }),
    )
    .await
    .map_err(|_| Error::Timeout {
        what: format!("Deployment {namespace}/{name} to become Available"),
        after: timeout,
    })??;
    available
        .ok_or_else(|| Error::InvalidManifest(format!("Deployment {namespace}/{name} is gone")))
}

/// Available, and every wanted replica ready and up to date.
pub fn is_available(deployment: &Deployment) -> bool {
    let wanted = deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.replicas)
        .unwrap_or(1);
    let Some(status) = &deployment.status else {
        return false;
    };
    let available = status
        .conditions
        .iter()
        .flatten()
        .any(|condition| condition.type_ == "Available" && condition.status == "True");
    available
        && status.observed_generation == deployment.metadata.generation
        && status.ready_replicas.unwrap_or(0) == wanted
        && status.updated_replicas.unwrap_or(0) == wanted
}

/// The endpoints of the Service `namespace/name` across its EndpointSlices, as
/// (address, ready) pairs.
pub async fn service_endpoints(
    client: &Client,
    namespace: &str,
    service: &str,
) -> Result<Vec<(String, bool)>> {
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
    let selector = format!("kubernetes.io/service-name={service}");
    let list = slices
        .list(&ListParams::default().labels(&selector))
        .await?;
    Ok(list
        .items
        .iter()
        .flat_map(|slice| slice.endpoints.iter().flatten())
        .flat_map(|endpoint| {
            let ready = endpoint
                .conditions
                .as_ref()
                .and_then(|conditions| conditions.ready)
                .unwrap_or(false);
            endpoint
                .addresses
                .iter()
                .map(move |address| (address.clone(), ready))
        })
        .collect())
}

/// Polls [`service_endpoints`] until `accept` says yes, and returns the endpoints.
/// EndpointSlices have generated names, so there is no one object to watch.
pub async fn wait_service_endpoints(
    client: &Client,
    namespace: &str,
    service: &str,
    timeout: Duration,
    accept: impl Fn(&[(String, bool)]) -> bool,
) -> Result<Vec<(String, bool)>> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let endpoints = service_endpoints(client, namespace, service).await?;
        if accept(&endpoints) {
            return Ok(endpoints);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!(
                    "the endpoints of Service {namespace}/{service} (last seen: {endpoints:?})"
                ),
                after: timeout,
            });
        }
        tokio::time::sleep(ENDPOINTS_POLL_INTERVAL).await;
    }
}

const ENDPOINTS_POLL_INTERVAL: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workload_is_a_deployment_and_a_service_selecting_its_pods() {
        let workload = Workload::new("user-service", "myrepo/user-service:pr-123", 8080)
            .replicas(2)
            .never_ready();
        let documents: Vec<Value> =
            serde_saphyr::from_multiple(&workload.yaml()).expect("workload YAML");
        assert_eq!(documents.len(), 2);
        let (deployment, service) = (&documents[0], &documents[1]);
        assert_eq!(deployment["spec"]["replicas"], 2);
        let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
        assert_eq!(pod_labels["app"], "user-service");
        assert_eq!(pod_labels["testmesh.io/never-ready"], "true");
        assert_eq!(service["spec"]["selector"]["app"], "user-service");
        assert_eq!(service["spec"]["ports"][0]["port"], 8080);
    }

    #[test]
    fn the_product_example_puts_review_and_staging_services_apart() {
        let files = product_example_files();
        let paths: Vec<&str> = files.iter().map(|(path, _)| path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "review/user-service.yaml",
                "review/product-service.yaml",
                "staging/order-service.yaml"
            ]
        );
        assert!(files[2].1.contains("8083"));
    }
}
