//! The `testmesh` command.
#![deny(warnings, rust_2018_idioms)]
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// TestMesh: isolated, warm, reusable test environments per context on Kubernetes.
#[derive(Parser, Debug)]
#[command(name = "testmesh", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the operator: reconcile every TestEnvironment through its lifecycle. Connects
    /// to the cluster by the usual kubeconfig rules (in-cluster, KUBECONFIG, ~/.kube/config).
    Run(Box<testmesh::config::RunConfig>),
    /// For CI: claim an environment for a context, wait until it is Ready, and hand over
    /// its routing policy (JSON, `export NAME_URL=…` lines, GitHub Actions outputs and
    /// variables, or a GitLab dotenv). Exits non-zero with the reason on failure or
    /// timeout, releasing the claim.
    Claim(Box<testmesh::ci::ClaimArgs>),
    /// For CI: release a claim (delete it), handing its environment to the next run.
    Release(testmesh::ci::ReleaseArgs),
    /// Print the REST API's OpenAPI 3 document (also served at /api/v1/openapi.json).
    Openapi,
    /// Print the CustomResourceDefinitions as YAML, or write one file per CRD into a
    /// directory (how `crds/` is generated: `make crds`).
    Crds {
        /// Write `<plural>.<group>.yaml` files into this directory instead of stdout.
        #[arg(long, value_name = "DIR")]
        output_dir: Option<PathBuf>,
    },
}

/// The name kubectl runs a plugin by: `kubectl testmesh …` finds `kubectl-testmesh` on
/// the PATH.
const KUBECTL_PLUGIN: &str = "kubectl-testmesh";

/// How the user called this binary, for usage and help: `kubectl testmesh` when run as the
/// kubectl plugin (`argv[0]` is `kubectl-testmesh`, a copy or a link), else `testmesh`.
fn invoked_as(argv0: Option<&std::ffi::OsStr>) -> &'static str {
    let file_name = argv0
        .map(std::path::Path::new)
        .and_then(std::path::Path::file_stem)
        .and_then(std::ffi::OsStr::to_str);
    match file_name {
        Some(KUBECTL_PLUGIN) => "kubectl testmesh",
        _ => "testmesh",
    }
}

fn main() -> ExitCode {
    let argv0 = std::env::args_os().next();
    let matches = Cli::command()
        .bin_name(invoked_as(argv0.as_deref()))
        .get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let result: Result<(), Box<dyn std::error::Error>> = match cli.command {
        Command::Run(config) => run(*config),
        Command::Claim(args) => block_on(testmesh::ci::claim(*args)),
        Command::Release(args) => block_on(testmesh::ci::release(args)),
        Command::Openapi => print_openapi(),
        Command::Crds { output_dir } => {
            testmesh::crdgen::write(output_dir.as_deref()).map_err(Into::into)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("testmesh: {error}");
            ExitCode::FAILURE
        }
    }
}

fn print_openapi() -> Result<(), Box<dyn std::error::Error>> {
    let document = serde_json::to_string_pretty(&testmesh::api::openapi_document())?;
    println!("{document}");
    Ok(())
}

fn block_on<E: std::error::Error + 'static>(
    work: impl Future<Output = Result<(), E>>,
) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(work)?;
    Ok(())
}

fn run(config: testmesh::config::RunConfig) -> Result<(), Box<dyn std::error::Error>> {
    testmesh::telemetry::init(config.log_format);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(testmesh::operator::run(config))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn run_as_kubectl_testmesh_it_is_a_kubectl_plugin() {
        for (argv0, shown) in [
            (Some("kubectl-testmesh"), "kubectl testmesh"),
            (Some("/usr/local/bin/kubectl-testmesh"), "kubectl testmesh"),
            (Some("kubectl-testmesh.exe"), "kubectl testmesh"),
            (Some("./target/release/testmesh"), "testmesh"),
            (Some("kubectl-testmesh-old"), "testmesh"),
            (None, "testmesh"),
        ] {
            assert_eq!(invoked_as(argv0.map(OsStr::new)), shown, "{argv0:?}");
        }
    }

    #[test]
    fn the_plugins_usage_names_the_kubectl_command() {
        let error = Cli::command()
            .bin_name(invoked_as(Some(OsStr::new("kubectl-testmesh"))))
            .try_get_matches_from(["kubectl-testmesh", "claim"])
            .expect_err("claim needs --context");
        let shown = error.render().to_string();
        assert!(shown.contains("Usage: kubectl testmesh claim"), "{shown}");
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
