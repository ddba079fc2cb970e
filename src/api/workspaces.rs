//! `/api/v1/workspaces`: the workspaces that hold environments, for a caller who may
//! list environments in every namespace (a platform team), so that a dashboard can offer
//! them instead of asking for a name. Most callers may list in their own workspaces only
//! and get the API server's 403; they name their workspace instead.
//!
//! Only the environments' metadata is read: the answer needs their namespaces, not
//! their specs.

use std::collections::BTreeMap;

use axum::Json;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use schemars::JsonSchema;
use serde::Serialize;

use super::caller::Caller;
use super::error::ApiError;
use crate::resources::TestEnvironment;

/// A workspace holding environments.
#[derive(Serialize, JsonSchema, Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    /// The namespace.
    pub workspace_id: String,
    /// How many environments it holds (destroyed ones kept as records included).
    pub test_environments: u32,
}

/// The workspaces holding environments, sorted by id.
#[derive(Serialize, JsonSchema, Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceList {
    pub items: Vec<Workspace>,
}

pub async fn list(Caller(client): Caller) -> Result<Json<WorkspaceList>, ApiError> {
    let listed = Api::<TestEnvironment>::all(client)
        .list_metadata(&ListParams::default())
        .await?;
    Ok(Json(counted(
        listed.items.iter().filter_map(|e| e.namespace()),
    )))
}

fn counted(namespaces: impl Iterator<Item = String>) -> WorkspaceList {
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for namespace in namespaces {
        *counts.entry(namespace).or_default() += 1;
    }
    WorkspaceList {
        items: counts
            .into_iter()
            .map(|(workspace_id, test_environments)| Workspace {
                workspace_id,
                test_environments,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspaces_are_counted_and_sorted() {
        let list = counted(
            ["team-b", "team-a", "team-b"]
                .into_iter()
                .map(str::to_owned),
        );
        assert_eq!(
            list.items,
            [
                Workspace {
                    workspace_id: "team-a".to_owned(),
                    test_environments: 1
                },
                Workspace {
                    workspace_id: "team-b".to_owned(),
                    test_environments: 2
                },
            ]
        );
    }
}
