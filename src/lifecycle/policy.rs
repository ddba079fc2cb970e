//! Which namespace names the operator may create and delete for environments.
//!
//! An environment names its namespace, and whoever may create environments could
//! otherwise point one at `kube-system`. The policy refuses system namespaces, the
//! operator's and the GitOps controllers' own namespaces, and — when an allow-list is
//! configured — any name that matches none of its patterns.

use std::collections::BTreeSet;

/// Namespaces no environment may ever use.
pub const SYSTEM_NAMESPACES: [&str; 4] =
    ["kube-system", "kube-public", "kube-node-lease", "default"];

/// The namespace policy, built once from the operator's configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespacePolicy {
    denied: BTreeSet<String>,
    allowed: Vec<String>,
}

impl NamespacePolicy {
    /// `protected`: the operator's and the GitOps controllers' namespaces, added to the
    /// system ones. `allow_patterns`: glob patterns (`*` matches any run of characters);
    /// empty means any name that is not denied.
    pub fn new<'a>(
        protected: impl IntoIterator<Item = &'a str>,
        allow_patterns: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        NamespacePolicy {
            denied: SYSTEM_NAMESPACES
                .into_iter()
                .chain(protected)
                .map(str::to_owned)
                .collect(),
            allowed: allow_patterns
                .into_iter()
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }

    /// `Err` with the reason when an environment may not use namespace `name`.
    pub fn check(&self, name: &str) -> Result<(), String> {
        if self.denied.contains(name) {
            return Err(format!(
                "namespace {name} is protected (system, operator or GitOps controller namespace); environments never use it"
            ));
        }
        if !self.allowed.is_empty() && !self.allowed.iter().any(|p| glob_matches(p, name)) {
            return Err(format!(
                "namespace {name} matches none of the operator's allowed patterns ({})",
                self.allowed.join(", ")
            ));
        }
        Ok(())
    }
}

/// Whether `name` matches `pattern`, where `*` matches any run of characters.
fn glob_matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_and_protected_namespaces_are_refused() {
        let policy = NamespacePolicy::new(["testmesh-system", "argocd"], []);
        for name in [
            "kube-system",
            "kube-public",
            "kube-node-lease",
            "default",
            "testmesh-system",
            "argocd",
        ] {
            let refusal = policy.check(name).expect_err(name);
            assert!(refusal.contains(name), "{refusal}");
        }
        assert_eq!(policy.check("review-pr-1"), Ok(()));
    }

    #[test]
    fn allow_list_limits_names_when_set() {
        let policy = NamespacePolicy::new([], ["review-*", "nightly"]);
        assert_eq!(policy.check("review-pr-1"), Ok(()));
        assert_eq!(policy.check("nightly"), Ok(()));
        let refusal = policy.check("staging").expect_err("not allowed");
        assert!(refusal.contains("review-*, nightly"), "{refusal}");
        assert!(policy.check("kube-system").is_err(), "deny wins over allow");
    }

    #[test]
    fn blank_patterns_mean_no_allow_list() {
        let policy = NamespacePolicy::new([], ["", " "]);
        assert_eq!(policy.check("anything"), Ok(()));
    }

    #[test]
    fn glob_semantics() {
        let cases = [
            ("review-*", "review-pr-1", true),
            ("review-*", "review-", true),
            ("review-*", "staging", false),
            ("*-test", "pr-1-test", true),
            ("*-test", "pr-1-tests", false),
            ("pr-*-env", "pr-12-env", true),
            ("pr-*-env", "pr-env", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "acb", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("*", "anything", true),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(glob_matches(pattern, name), expected, "{pattern} vs {name}");
        }
    }
}
