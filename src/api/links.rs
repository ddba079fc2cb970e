//! Links from an environment to its app in the GitOps controller's own web UI, so that a
//! person looking at an environment that will not turn warm is one click from the
//! Application or Kustomization that says why.
//!
//! TestMesh cannot know where those UIs are served; the operator is told
//! (`--argocd-url`, `--flux-ui-url`) and the API answers each environment with its link.

/// Where the GitOps controllers' UIs are, and the apps' default namespaces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProviderLinks {
    /// Namespace of an Argo CD Application whose environment names none.
    pub argocd_namespace: String,
    /// Namespace of a Flux Kustomization whose environment names none.
    pub flux_namespace: String,
    /// Argo CD's UI, e.g. `https://argocd.example.com`.
    pub argocd_url: Option<String>,
    /// A Flux UI's page of one Kustomization, with `{namespace}` and `{name}` standing
    /// for the Kustomization's.
    pub flux_ui_url: Option<String>,
}

impl ProviderLinks {
    /// The UI page of `provider`'s app `name` (in `namespace`, else the provider's
    /// default), when that UI is known.
    pub fn app_url(
        &self,
        provider: crate::resources::Provider,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<String> {
        use crate::resources::Provider;
        match provider {
            Provider::Argocd => {
                let namespace = namespace.unwrap_or(&self.argocd_namespace);
                // Argo CD ≥ 2.5 addresses an app by namespace and name.
                self.argocd_url.as_ref().map(|base| {
                    format!(
                        "{}/applications/{namespace}/{name}",
                        base.trim_end_matches('/')
                    )
                })
            }
            Provider::Flux => {
                let namespace = namespace.unwrap_or(&self.flux_namespace);
                self.flux_ui_url.as_ref().map(|template| {
                    template
                        .replace("{namespace}", namespace)
                        .replace("{name}", name)
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Provider;

    fn links() -> ProviderLinks {
        ProviderLinks {
            argocd_namespace: "argocd".to_owned(),
            flux_namespace: "flux-system".to_owned(),
            argocd_url: Some("https://argocd.example.com/".to_owned()),
            flux_ui_url: Some(
                "https://gitops.example.com/kustomization/details?name={name}&namespace={namespace}"
                    .to_owned(),
            ),
        }
    }

    #[test]
    fn an_argocd_app_links_to_its_page_by_namespace_and_name() {
        assert_eq!(
            links().app_url(Provider::Argocd, None, "testmesh-pr-123"),
            Some("https://argocd.example.com/applications/argocd/testmesh-pr-123".to_owned())
        );
        assert_eq!(
            links().app_url(Provider::Argocd, Some("team-a-apps"), "x"),
            Some("https://argocd.example.com/applications/team-a-apps/x".to_owned())
        );
    }

    #[test]
    fn a_flux_kustomization_fills_the_template() {
        assert_eq!(
            links().app_url(Provider::Flux, None, "pr-7"),
            Some(
                "https://gitops.example.com/kustomization/details?name=pr-7&namespace=flux-system"
                    .to_owned()
            )
        );
    }

    #[test]
    fn no_link_without_the_ui() {
        let unknown = ProviderLinks {
            argocd_url: None,
            flux_ui_url: None,
            ..links()
        };
        assert_eq!(unknown.app_url(Provider::Argocd, None, "a"), None);
        assert_eq!(unknown.app_url(Provider::Flux, None, "a"), None);
    }
}
