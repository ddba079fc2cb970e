//! The `testmesh` command.
#![deny(warnings, rust_2018_idioms)]
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    /// For CI: claim an environment for a context, wait until it is Ready, and print its
    /// routing policy (JSON, or `export NAME_URL=…` lines). Exits non-zero with the reason
    /// on failure or timeout, releasing the claim.
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

fn main() -> ExitCode {
    let cli = Cli::parse();
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
    runtime.block_on(testmesh::controller::run(config))?;
    Ok(())
}
