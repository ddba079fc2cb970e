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
    let result = match cli.command {
        Command::Crds { output_dir } => testmesh::crdgen::write(output_dir.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("testmesh: {error}");
            ExitCode::FAILURE
        }
    }
}
