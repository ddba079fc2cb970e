//! The Helm chart on a real API server: everything it renders is accepted (server-side
//! dry run, so admission and the API's own validation see it), its RBAC names no
//! wildcard, and the operator — started with the Deployment's own environment under the
//! chart's ServiceAccount — serves a claim through Argo CD and an environment through
//! Flux, from creation to deleted record, with nothing but the chart's permissions.
//!
//! On Kubernetes 1.36 (the test control plane's release) the chart's admission policy
//! gives environments their teardown finalizer as they are created.
//!
//! Rendering needs the helm that `make chart-tools` builds (`make test` builds it first).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use promql_parser::parser::{Expr as PromExpr, VectorSelector};
use serde_json::{Value, json};
use testmesh::lifecycle::{ClaimPhase, Phase};
use testmesh::resources::{
    ROUTING_CONFIG_MAP, TEARDOWN_FINALIZER, TestEnvironment, TestEnvironmentClaim,
};
use testmesh_testenv::argocd::{self, ArgoCd};
use testmesh_testenv::chart;
use testmesh_testenv::flux::{self, Flux};
use testmesh_testenv::{apply_yaml, with_temp_namespace};

use crate::support::{REACTION, operated_workspace, phase_of, run, wait_for, workspace};

/// The chart's RBAC and identity: applied for real in the lifecycle test.
const RBAC_KINDS: [&str; 5] = [
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
];

/// `helm template` of the chart as `release` in `namespace`, CRDs included, with
/// `values` over the defaults, for the test control plane's API versions.
fn render(release: &str, namespace: &str, values: &Value) -> String {
    chart::render(release, namespace, values, &["--include-crds"])
}

fn objects(rendered: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(rendered)
        .expect("rendered YAML")
        .into_iter()
        .filter(|object| !object.is_null())
        .collect()
}

fn kind(object: &Value) -> &str {
    object["kind"].as_str().unwrap_or_default()
}

/// One of the chart's ClusterRoles for TestMesh's users, which Kubernetes aggregates into
/// its own `view`, `edit` and `admin` (the operator's own RBAC is everything else).
fn is_users_role(object: &Value) -> bool {
    kind(object) == "ClusterRole"
        && object["metadata"]["labels"]
            .as_object()
            .is_some_and(|labels| {
                labels
                    .keys()
                    .any(|label| label.starts_with("rbac.authorization.k8s.io/aggregate-to-"))
            })
}

fn of_kind<'a>(objects: &'a [Value], wanted: &str) -> &'a Value {
    objects
        .iter()
        .find(|object| kind(object) == wanted)
        .unwrap_or_else(|| panic!("the chart renders no {wanted}"))
}

fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

#[tokio::test]
async fn everything_the_chart_renders_is_accepted_by_the_api_server() {
    let (control_plane, _client, release_namespace) = workspace("chart").await;
    let namespace = release_namespace.name();
    // No ServiceMonitor: its CRD is not installed here (kubeconform checks it in
    // `make check-chart`).
    let rendered = render(
        "chart",
        namespace,
        &json!({"networkPolicy": {"enabled": true}}),
    );
    let objects = objects(&rendered);
    let kinds: BTreeSet<&str> = objects.iter().map(kind).collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "Deployment",
            "MutatingAdmissionPolicy",
            "MutatingAdmissionPolicyBinding",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
        ])
    );

    let dir = control_plane.run_dir().join("chart");
    let manifest = write_file(&dir, &format!("{namespace}.yaml"), &rendered);
    let mut kubectl = control_plane.kubectl();
    kubectl
        .args(["apply", "--dry-run=server", "-f"])
        .arg(&manifest);
    let (ok, stdout, stderr) = run(kubectl);
    assert!(ok, "the API server refused the chart:\n{stdout}\n{stderr}");
    let accepted = stdout
        .lines()
        .filter(|line| line.ends_with("(server dry run)"))
        .count();
    assert_eq!(accepted, objects.len(), "{stdout}");

    let roles = objects
        .iter()
        .filter(|object| matches!(kind(object), "ClusterRole" | "Role"));
    for role in roles {
        let name = &role["metadata"]["name"];
        for rule in role["rules"].as_array().expect("rules") {
            for field in [
                "apiGroups",
                "resources",
                "verbs",
                "resourceNames",
                "nonResourceURLs",
            ] {
                let values = rule[field].as_array().cloned().unwrap_or_default();
                assert!(
                    values
                        .iter()
                        .all(|v| !v.as_str().unwrap_or("").contains('*')),
                    "{name} has a wildcard in {field}: {rule}"
                );
            }
        }
    }
}

/// The selectors of every series `expr` reads: (metric name, label matchers).
fn series_read(expr: &PromExpr) -> Vec<(String, Vec<(String, String)>)> {
    let selector = |vs: &VectorSelector| {
        let matchers = vs
            .matchers
            .matchers
            .iter()
            .map(|m| (m.name.clone(), m.value.clone()))
            .collect();
        (vs.name.clone().unwrap_or_default(), matchers)
    };
    match expr {
        PromExpr::VectorSelector(vs) => vec![selector(vs)],
        PromExpr::MatrixSelector(ms) => vec![selector(&ms.vs)],
        PromExpr::Aggregate(a) => series_read(&a.expr),
        PromExpr::Unary(u) => series_read(&u.expr),
        PromExpr::Paren(p) => series_read(&p.expr),
        PromExpr::Subquery(s) => series_read(&s.expr),
        PromExpr::Binary(b) => [series_read(&b.lhs), series_read(&b.rhs)].concat(),
        PromExpr::Call(c) => c.args.args.iter().flat_map(|a| series_read(a)).collect(),
        PromExpr::NumberLiteral(_) | PromExpr::StringLiteral(_) | PromExpr::Extension(_) => {
            Vec::new()
        }
    }
}

/// Every series name the operator exports, from its own exposition: a counter `c` as
/// `c_total`, a histogram `h` as `h_bucket`, `h_sum` and `h_count`, an info `i` as `i_info`.
/// A family with labels appears once it has a series: the error counter after an error.
fn exported_series() -> BTreeSet<String> {
    let metrics = testmesh::metrics::Metrics::new();
    metrics.failed("apply", "kube");
    let exposition = metrics.render().expect("exposition");
    exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .flat_map(|line| {
            let (name, kind) = line.split_once(' ').expect("# TYPE name kind");
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                "info" => &["_info"],
                _ => &[""],
            };
            suffixes.iter().map(move |suffix| format!("{name}{suffix}"))
        })
        .collect()
}

/// The optional PrometheusRule: not rendered unless asked for; asked for, every alert is
/// PromQL that parses, reads only series the operator really exports, picks this
/// release's series (the ServiceMonitor's job and namespace, or the selector given), and
/// carries a severity, the alert labels given, a summary and a description.
#[test]
fn the_prometheus_rule_alerts_only_on_what_the_operator_exports() {
    let default = objects(&render("testmesh", "ops", &json!({})));
    assert!(
        !default.iter().any(|o| kind(o) == "PrometheusRule"),
        "off by default"
    );

    let exported = exported_series();
    for series in [
        "testmesh_leader",
        "process_start_time_seconds",
        "testmesh_build_info",
    ] {
        assert!(exported.contains(series), "{series} in {exported:?}");
    }
    let cases = [
        (json!({}), vec![("job", "testmesh"), ("namespace", "ops")]),
        (
            json!({"selector": "service=\"tm\", env=\"prod\""}),
            vec![("service", "tm"), ("env", "prod")],
        ),
    ];
    for (extra, picks) in cases {
        let mut values = json!({"prometheusRule": {
            "enabled": true,
            "labels": {"release": "kube-prometheus"},
            "alertLabels": {"team": "platform"},
        }});
        for (key, value) in extra.as_object().expect("object") {
            values["prometheusRule"][key] = value.clone();
        }
        let objects = objects(&render("testmesh", "ops", &values));
        let rule = of_kind(&objects, "PrometheusRule");
        assert_eq!(rule["metadata"]["namespace"], "ops");
        assert_eq!(rule["metadata"]["labels"]["release"], "kube-prometheus");
        let rules = rule["spec"]["groups"][0]["rules"]
            .as_array()
            .expect("rules");
        let alerts: BTreeSet<&str> = rules.iter().filter_map(|r| r["alert"].as_str()).collect();
        assert_eq!(
            alerts,
            BTreeSet::from([
                "TestMeshEnvironmentStuck",
                "TestMeshExpiryLate",
                "TestMeshNoLeader",
                "TestMeshReconcileErrors",
                "TestMeshSeveralLeaders",
            ])
        );
        let stuck: BTreeSet<&str> = rules
            .iter()
            .filter(|r| r["alert"] == "TestMeshEnvironmentStuck")
            .filter_map(|r| r["labels"]["phase"].as_str())
            .collect();
        let transient: BTreeSet<&str> = Phase::TRANSIENT.iter().map(|p| p.as_str()).collect();
        assert_eq!(stuck, transient, "one alert per transient phase");
        for rule in rules {
            let alert = &rule["alert"];
            let expr = rule["expr"].as_str().expect("expr");
            let parsed = promql_parser::parser::parse(expr)
                .unwrap_or_else(|e| panic!("{alert}: {expr}: {e}"));
            let read = series_read(&parsed);
            assert!(!read.is_empty(), "{alert} reads no series");
            for (name, matchers) in read {
                assert!(
                    exported.contains(&name),
                    "{alert} reads {name}, which is not exported"
                );
                for (label, value) in &picks {
                    assert!(
                        matchers.iter().any(|(l, v)| l == label && v == value),
                        "{alert}: {name} without {label}={value}: {expr}"
                    );
                }
            }
            let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
            assert!(
                ["warning", "critical"].contains(&severity),
                "{alert}: {severity}"
            );
            assert_eq!(rule["labels"]["team"], "platform", "{alert}");
            for annotation in ["summary", "description"] {
                assert!(
                    rule["annotations"][annotation]
                        .as_str()
                        .is_some_and(|text| !text.trim().is_empty()),
                    "{alert}: {annotation}"
                );
            }
        }
    }
}

/// The image a default install runs is this release's: the chart's appVersion is the
/// binary's version (what `make dist` checks too), and `image.tag` or `image.digest`
/// overrides it. The Dockerfile builds from pinned images only, and `.dockerignore`
/// keeps the build output out of the context.
#[test]
fn the_default_image_is_this_release_built_from_pinned_images() {
    let image = |values: Value| {
        let objects = objects(&render("testmesh", "testmesh-system", &values));
        of_kind(&objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .expect("image")
            .to_owned()
    };
    let release = env!("CARGO_PKG_VERSION");
    assert_eq!(
        image(json!({})),
        format!("ghcr.io/testmesh/testmesh:{release}")
    );
    assert_eq!(
        image(json!({"image": {"tag": "0.0.9"}})),
        "ghcr.io/testmesh/testmesh:0.0.9"
    );
    let digest = format!("sha256:{}", "a".repeat(64));
    assert_eq!(
        image(json!({"image": {"digest": digest}})),
        format!("ghcr.io/testmesh/testmesh@{digest}")
    );

    let root = crate::support::repo_root();
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).expect("Dockerfile");
    for from in dockerfile.lines().filter(|l| l.starts_with("FROM ")) {
        let image = from.split_whitespace().nth(1).unwrap_or_default();
        let (_, tag) = image.rsplit_once(':').unwrap_or((image, ""));
        let pinned = image == "scratch"
            || image.contains("@sha256:")
            || tag
                .split(['.', '-'])
                .filter(|part| part.parse::<u32>().is_ok())
                .count()
                >= 3;
        assert!(pinned, "{from}: not pinned to an exact release or digest");
    }
    let ignored = std::fs::read_to_string(root.join(".dockerignore")).expect(".dockerignore");
    assert!(
        ignored
            .lines()
            .any(|line| line.trim_end_matches('/') == "target"),
        ".dockerignore must keep target/ out of the build context"
    );
}

/// The chart's roles for TestMesh's users fold into Kubernetes' own: once the
/// clusterrole-aggregation controller has copied their rules into `view`, `edit` and
/// `admin`, the RoleBinding to `edit` a team already has lets alice claim and change
/// environments in her workspace, and one to `view` lets bob read them and nothing more.
#[tokio::test]
async fn the_charts_user_roles_fold_into_view_edit_and_admin() {
    let (control_plane, client, workspace) = workspace("chart-roles").await;
    let workspace = workspace.name().to_owned();
    let objects = objects(&render(&workspace, &workspace, &json!({})));
    let users_roles: Vec<&Value> = objects.iter().filter(|o| is_users_role(o)).collect();
    let fullname = format!("{workspace}-testmesh");
    let mut names: Vec<&str> = users_roles
        .iter()
        .filter_map(|role| role["metadata"]["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [format!("{fullname}-edit"), format!("{fullname}-view")],
        "named after the release: testmesh-view and testmesh-edit for `helm install testmesh`"
    );
    let yaml: Vec<String> = users_roles.iter().map(|role| role.to_string()).collect();
    apply_yaml(&client, &yaml.join("\n---\n"))
        .await
        .expect("apply the users' roles");

    // What kube-controller-manager's aggregation made of Kubernetes' own roles.
    let cluster_roles: Api<ClusterRole> = Api::all(client.clone());
    let testmesh_verbs = |role: Option<&ClusterRole>| -> BTreeSet<String> {
        role.and_then(|r| r.rules.as_ref())
            .into_iter()
            .flatten()
            .filter(|rule| {
                rule.api_groups
                    .as_ref()
                    .is_some_and(|groups| groups.iter().any(|g| g == "testmesh.io"))
            })
            .flat_map(|rule| rule.verbs.clone())
            .collect()
    };
    let read: BTreeSet<String> = ["get", "list", "watch"].map(String::from).into();
    let write: BTreeSet<String> = [
        "get",
        "list",
        "watch",
        "create",
        "update",
        "patch",
        "delete",
        "deletecollection",
    ]
    .map(String::from)
    .into();
    for (aggregate, verbs) in [("view", &read), ("edit", &write), ("admin", &write)] {
        wait_for(
            &cluster_roles,
            aggregate,
            REACTION,
            "aggregating TestMesh's rules",
            |role| testmesh_verbs(role) == *verbs,
        )
        .await;
    }

    let bind = |user: &str, role: &str| {
        format!(
            r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: {user}-{role}, namespace: {workspace}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {role}}}
subjects:
  - {{apiGroup: rbac.authorization.k8s.io, kind: User, name: {user}}}
"#
        )
    };
    apply_yaml(
        &client,
        &format!("{}---{}", bind("alice", "edit"), bind("bob", "view")),
    )
    .await
    .expect("bind alice to edit and bob to view");
    let claims_as = async |user: &str| -> Api<TestEnvironmentClaim> {
        let client = control_plane.user_client(user).await.expect("user client");
        Api::namespaced(client, &workspace)
    };
    let (alices, bobs) = (claims_as("alice").await, claims_as("bob").await);
    // The authorizer learns of the bindings through its own watch.
    let deadline = Instant::now() + REACTION;
    while alices.list(&Default::default()).await.is_err()
        || bobs.list(&Default::default()).await.is_err()
    {
        assert!(Instant::now() < deadline, "the bindings never took effect");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let claim: TestEnvironmentClaim = serde_json::from_value(json!({
        "apiVersion": "testmesh.io/v1alpha1",
        "kind": "TestEnvironmentClaim",
        "metadata": {"name": "by-edit"},
        "spec": {"context": "pr-1", "environmentName": "pr-1"},
    }))
    .expect("claim");
    alices
        .create(&PostParams::default(), &claim)
        .await
        .expect("edit may create claims");
    alices
        .patch(
            "by-edit",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"maxDurationMinutes": 30}})),
        )
        .await
        .expect("edit may patch claims");
    assert!(bobs.get("by-edit").await.is_ok(), "view may read claims");
    let refused = bobs
        .delete("by-edit", &DeleteParams::default())
        .await
        .expect_err("view may not delete");
    assert!(
        matches!(&refused, kube::Error::Api(status) if status.code == 403),
        "{refused}"
    );
    alices
        .delete("by-edit", &DeleteParams::default())
        .await
        .expect("edit may delete claims");

    // Cluster-wide: leave Kubernetes' roles as they were for the other tests.
    for name in &names {
        cluster_roles
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete a users' role");
    }
}

/// The operator process under the chart's ServiceAccount; killed when dropped, its log
/// printed if the test failed. (The shared `Operator` fixture runs as an administrator on
/// purpose; this one must not.)
struct ChartOperator {
    child: Child,
    log: PathBuf,
    metrics_port: u16,
}

impl ChartOperator {
    /// Starts `testmesh` with the Deployment's args and environment, `pod` standing in
    /// for the downward API's pod name and namespace.
    fn start(deployment: &Value, pod: (&str, &str), kubeconfig: &Path, log: PathBuf) -> Self {
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let args: Vec<&str> = container["args"]
            .as_array()
            .expect("args")
            .iter()
            .map(|arg| arg.as_str().expect("arg"))
            .collect();
        let mut command = Command::new("setpriv");
        command
            .args(["--pdeathsig", "KILL", "--", env!("CARGO_BIN_EXE_testmesh")])
            .args(&args);
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("TESTMESH_") || key.starts_with("POD_") || key == "RUST_LOG" {
                command.env_remove(key.as_ref());
            }
        }
        for variable in container["env"].as_array().expect("env") {
            let name = variable["name"].as_str().expect("env name");
            let value = match (
                variable["value"].as_str(),
                variable["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
            ) {
                (Some(value), _) => value,
                (None, Some("metadata.name")) => pod.0,
                (None, Some("metadata.namespace")) => pod.1,
                _ => panic!("cannot stand in for {variable}"),
            };
            command.env(name, value);
        }
        let log_file = std::fs::File::create(&log).expect("operator log");
        let child = command
            .env("KUBECONFIG", kubeconfig)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log handle"))
            .stderr(log_file)
            .spawn()
            .expect("start testmesh run");
        let metrics_port = container["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .find(|port| port["name"] == "metrics")
            .and_then(|port| port["containerPort"].as_u64())
            .expect("metrics port") as u16;
        ChartOperator {
            child,
            log,
            metrics_port,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The HTTP status of `path` on the metrics port, if it answers.
    fn probe(&self, path: &str) -> Option<u16> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.metrics_port)).ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        response.split_whitespace().nth(1)?.parse().ok()
    }
}

impl Drop for ChartOperator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- operator log {} ---\n{}",
                self.log.display(),
                self.log()
            );
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port()
}

#[tokio::test]
async fn the_operator_runs_argocd_and_flux_lifecycles_with_only_the_charts_permissions() {
    let (control_plane, client, workspace) = workspace("chart-rbac").await;
    let workspace = workspace.name().to_owned();
    let release = with_temp_namespace(&client, "chart-release")
        .await
        .expect("release namespace");
    let release = release.name().to_owned();
    argocd::install_crds(&client).await;
    flux::install_crds(&client).await;
    let argo_namespace = with_temp_namespace(&client, "chart-rbac-argocd")
        .await
        .expect("Argo CD namespace");
    let flux_namespace = with_temp_namespace(&client, "chart-rbac-flux")
        .await
        .expect("Flux namespace");

    let objects = objects(&render(
        &release,
        &release,
        &json!({
            "replicaCount": 1,
            "operator": {
                "watchNamespace": workspace,
                "argocdNamespace": argo_namespace.name(),
                "fluxNamespace": flux_namespace.name(),
                // So that the operator deletes a record, too.
                "destroyedRetention": "1s",
                "logFormat": "text",
                "logLevel": "info,testmesh=debug",
                "listenAddress": "127.0.0.1",
            },
            "ports": {"http": free_port(), "metrics": free_port()},
        }),
    ));
    let rbac: Vec<String> = objects
        .iter()
        .filter(|object| RBAC_KINDS.contains(&kind(object)) && !is_users_role(object))
        .map(Value::to_string)
        .collect();
    assert_eq!(rbac.len(), RBAC_KINDS.len(), "RBAC objects rendered");
    apply_yaml(&client, &rbac.join("\n---\n"))
        .await
        .expect("apply the chart's RBAC");
    // As on a Kubernetes 1.36 cluster: environments are born with their finalizer.
    let policy: Vec<String> = objects
        .iter()
        .filter(|object| kind(object).starts_with("MutatingAdmissionPolicy"))
        .map(Value::to_string)
        .collect();
    assert_eq!(policy.len(), 2, "the admission policy and its binding");
    apply_yaml(&client, &policy.join("\n---\n"))
        .await
        .expect("apply the chart's admission policy");
    chart::wait_for_teardown_finalizer_policy(&client, &workspace).await;

    let service_account = of_kind(&objects, "ServiceAccount")["metadata"]["name"]
        .as_str()
        .expect("ServiceAccount name")
        .to_owned();
    let mut kubectl = control_plane.kubectl();
    kubectl.args([
        "create",
        "token",
        &service_account,
        "-n",
        &release,
        "--duration=1h",
    ]);
    let (ok, token, stderr) = run(kubectl);
    assert!(ok, "kubectl create token: {stderr}");
    let dir = control_plane.run_dir().join("chart");
    std::fs::create_dir_all(&dir).expect("chart work directory");
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {
            "server": control_plane.server_url(),
            "certificate-authority": control_plane.ca_cert_path(),
        }}],
        "users": [{"name": service_account, "user": {"token": token.trim()}}],
        "contexts": [{"name": "chart", "context": {"cluster": "test", "user": service_account}}],
        "current-context": "chart",
    });
    let kubeconfig = write_file(
        &dir,
        &format!("{release}.kubeconfig"),
        &kubeconfig.to_string(),
    );
    let operator = ChartOperator::start(
        of_kind(&objects, "Deployment"),
        ("testmesh-0", &release),
        &kubeconfig,
        dir.join(format!("{release}-operator.log")),
    );

    // Ready: both caches have listed, and watch, with these permissions.
    let deadline = Instant::now() + REACTION;
    while operator.probe("/readyz") != Some(200) {
        assert!(
            Instant::now() < deadline,
            "never ready:\n{}",
            operator.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A claim served through Argo CD, and an environment deployed by Flux.
    let flux = Flux::new(&client, flux_namespace.name());
    let flux_target = format!("{workspace}-flux-env");
    flux.create("chart-kustomization", &flux_target).await;
    flux.make_ready("chart-kustomization").await;
    let environments: Api<TestEnvironment> = Api::namespaced(client.clone(), &workspace);
    let fluxed: TestEnvironment = serde_json::from_value(json!({
        "apiVersion": "testmesh.io/v1alpha1",
        "kind": "TestEnvironment",
        "metadata": {"name": "chart-flux"},
        "spec": {
            "context": "chart-flux",
            "provider": "flux",
            "providerAppName": "chart-kustomization",
            "namespace": flux_target,
        }
    }))
    .expect("environment");
    environments
        .create(&PostParams::default(), &fluxed)
        .await
        .expect("create environment");

    let namespace = format!("{workspace}-env");
    let argo = ArgoCd::new(&client, argo_namespace.name());
    argo.create_app("chart-app", &namespace).await;
    argo.make_healthy("chart-app").await;
    let claims: Api<TestEnvironmentClaim> = Api::namespaced(client.clone(), &workspace);
    let claim: TestEnvironmentClaim = serde_json::from_value(json!({
        "apiVersion": "testmesh.io/v1alpha1",
        "kind": "TestEnvironmentClaim",
        "metadata": {"name": "chart-run"},
        "spec": {
            "context": "chart",
            "template": {
                "provider": "argocd",
                "providerAppName": "chart-app",
                "namespace": namespace,
                "services": [{"name": "web"}],
                "routing": {"publishConfigMap": true},
            }
        }
    }))
    .expect("claim");
    claims
        .create(&PostParams::default(), &claim)
        .await
        .expect("create claim");
    let bound = wait_for(&claims, "chart-run", REACTION, "bound", |claim| {
        claim.and_then(|c| c.status.as_ref()).and_then(|s| s.phase) == Some(ClaimPhase::Bound)
    })
    .await
    .expect("claim");
    let environment = bound
        .status
        .and_then(|s| s.environment_name)
        .expect("bound environment");
    wait_for(
        &environments,
        "chart-flux",
        REACTION,
        "warm",
        |environment| phase_of(environment) == Some(Phase::Warm),
    )
    .await;

    // A Service appearing reaches the routing ConfigMap only through the Service watch.
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    wait_for(
        &config_maps,
        ROUTING_CONFIG_MAP,
        REACTION,
        "routing ConfigMap created",
        |config_map| config_map.is_some(),
    )
    .await;
    let web: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"ports": [{"name": "http", "port": 8080}]}
    }))
    .expect("Service");
    Api::<Service>::namespaced(client.clone(), &namespace)
        .create(&PostParams::default(), &web)
        .await
        .expect("create Service");
    wait_for(
        &config_maps,
        ROUTING_CONFIG_MAP,
        REACTION,
        "routing to web",
        |config_map| {
            config_map
                .and_then(|c| c.data.as_ref())
                .is_some_and(|data| data.contains_key("web"))
        },
    )
    .await;
    // Turned off, the ConfigMap goes.
    environments
        .patch(
            &environment,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"routing": {"publishConfigMap": false}}})),
        )
        .await
        .expect("stop publishing the ConfigMap");
    wait_for(
        &config_maps,
        ROUTING_CONFIG_MAP,
        REACTION,
        "routing ConfigMap deleted",
        |config_map| config_map.is_none(),
    )
    .await;

    claims
        .delete("chart-run", &DeleteParams::default())
        .await
        .expect("release claim");
    for name in [environment.as_str(), "chart-flux"] {
        environments
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"destroy": true}})),
            )
            .await
            .expect("destroy");
    }
    for name in [environment.as_str(), "chart-flux"] {
        wait_for(
            &environments,
            name,
            Duration::from_secs(90),
            "torn down and its record deleted",
            |environment| environment.is_none(),
        )
        .await;
    }

    let log = operator.log();
    assert!(
        !log.to_lowercase().contains("forbidden"),
        "the operator was refused something:\n{log}"
    );
    let user = format!("system:serviceaccount:{release}:{service_account}");
    let writes: Vec<_> = control_plane
        .audited_writes()
        .expect("audit log")
        .into_iter()
        .filter(|write| write.user == user)
        .collect();
    let refused: Vec<_> = writes.iter().filter(|write| write.code == 403).collect();
    assert!(refused.is_empty(), "refused writes: {refused:#?}");
    let made: BTreeSet<String> = writes
        .iter()
        .filter(|write| write.code < 300)
        .map(|write| match &write.subresource {
            Some(subresource) => format!("{} {}/{subresource}", write.verb, write.resource),
            None => format!("{} {}", write.verb, write.resource),
        })
        .collect();
    for expected in [
        "create testenvironments",
        // Removing the finalizer once a deleted record is torn down (the admission
        // policy added it).
        "patch testenvironments",
        "patch testenvironments/status",
        "delete testenvironments",
        "patch testenvironmentclaims/status",
        "create namespaces",
        "delete namespaces",
        // The routing ConfigMap: created, brought up to date when the Service appears,
        // deleted when no longer asked for.
        "create configmaps",
        "patch configmaps",
        "delete configmaps",
        "delete applications",
        "delete kustomizations",
        "create events",
        // Leader election (on by default): create the Lease, renew it with update.
        "create leases",
        "update leases",
    ] {
        assert!(
            made.contains(expected),
            "expected the operator to {expected}; it made: {made:#?}"
        );
    }
}

/// With the chart's admission policy in place, a TestEnvironment created with a plain
/// create has the teardown finalizer in the create response, finalizers it already has
/// are kept, and the operator patches nothing into it on the way to `warm`.
#[tokio::test]
async fn the_charts_admission_policy_gives_environments_their_finalizer_at_birth() {
    let t = operated_workspace("chart-policy", &[]).await;
    chart::install_teardown_finalizer_policy(&t.client, &t.workspace).await;
    let namespace = t.healthy_app("born-app").await;
    let created = t
        .create(&t.environment("born", &namespace, "born-app", 30))
        .await;
    assert_eq!(
        created.metadata.finalizers,
        Some(vec![TEARDOWN_FINALIZER.to_owned()])
    );

    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    for (given, expected) in [
        (
            vec!["example.com/keep"],
            vec!["example.com/keep", TEARDOWN_FINALIZER],
        ),
        (vec![TEARDOWN_FINALIZER], vec![TEARDOWN_FINALIZER]),
        (vec![], vec![TEARDOWN_FINALIZER]),
    ] {
        let mut environment = t.environment("dry-run", &namespace, "born-app", 30);
        environment.metadata.finalizers = Some(given.iter().map(|f| (*f).to_owned()).collect());
        let created = t
            .environments
            .create(&dry_run, &environment)
            .await
            .expect("dry-run create");
        assert_eq!(
            created.metadata.finalizers.unwrap_or_default(),
            expected,
            "created with {given:?}"
        );
    }

    t.wait_phase("born", Phase::Warm, REACTION).await;
    let finalizer_patches = t.finalizer_patches();
    assert!(
        finalizer_patches.is_empty(),
        "the operator patched the environment: {finalizer_patches:#?}"
    );
}
