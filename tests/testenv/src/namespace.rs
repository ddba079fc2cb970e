//! Throw-away namespaces for test isolation.

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Client};

use crate::error::{Error, Result};

/// Label put on every namespace created by [`with_temp_namespace`].
pub const TEST_NAMESPACE_LABEL: (&str, &str) = ("testmesh.io/test", "true");

/// A namespace created for one test. It is *not* deleted on drop (that would
/// need async work in `Drop`); call [`TempNamespace::cleanup`] when the test
/// cares, or just leave it: the whole control plane is thrown away afterwards.
#[derive(Clone)]
pub struct TempNamespace {
    name: String,
    client: Client,
}

impl std::fmt::Debug for TempNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TempNamespace")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TempNamespace {
    /// The generated namespace name, `<prefix>-xxxxx`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Requests deletion of the namespace (does not wait for it to be gone).
    pub async fn cleanup(self) -> Result<()> {
        let namespaces: Api<Namespace> = Api::all(self.client);
        match namespaces
            .delete(&self.name, &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
            Err(e) => Err(Error::Kube(e)),
        }
    }
}

/// Creates a namespace named `<prefix>-<5 random chars>` (server-side
/// `generateName`) labelled `testmesh.io/test=true`. `prefix` must be a valid
/// DNS label prefix; the server truncates it if it is too long.
pub async fn with_temp_namespace(client: &Client, prefix: &str) -> Result<TempNamespace> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = Namespace {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", prefix.trim_end_matches('-'))),
            labels: Some(
                [TEST_NAMESPACE_LABEL]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    let created = namespaces
        .create(&PostParams::default(), &namespace)
        .await?;
    let name = created.metadata.name.ok_or_else(|| {
        Error::InvalidManifest("API server returned a namespace without a name".to_owned())
    })?;
    Ok(TempNamespace {
        name,
        client: client.clone(),
    })
}
