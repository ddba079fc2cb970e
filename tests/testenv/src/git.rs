//! Git repositories a test writes and the real GitOps controllers sync from: bare
//! repositories on disk. Argo CD ([`crate::argocd::RealArgoCd`]) reaches them through
//! `file:///…/name.git`, with no server; Flux ([`crate::flux::RealFlux`]) takes only
//! http(s) and ssh URLs, so [`GitHttpServer`] serves them over Git's smart HTTP protocol.
//!
//! Commits are made with git's plumbing commands (`hash-object`, `update-index`,
//! `write-tree`, `commit-tree`, `update-ref`) on a private index file: there is no work
//! tree to keep in step, and nothing of the developer's Git configuration (identity,
//! hooks, signing) takes part.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::ControlPlane;
use crate::assets;
use crate::error::{Error, Result};

mod smart_http;

pub use smart_http::GitHttpServer;

/// The branch every repository starts with, and the one commits go to.
pub const BRANCH: &str = "main";
/// The null object name: "no such ref" to `update-ref`, "remove" to `update-index`.
const NO_OBJECT: &str = "0000000000000000000000000000000000000000";
/// Author and committer of every commit.
const IDENTITY: (&str, &str) = ("testmesh-testenv", "testenv@testmesh.invalid");

/// A bare repository with one branch, [`BRANCH`].
#[derive(Debug)]
pub struct GitRepository {
    path: PathBuf,
    git: PathBuf,
    /// Commits go one at a time: each reads the branch, then moves it.
    commit_lock: Mutex<()>,
}

impl GitRepository {
    /// Creates an empty bare repository `<dir>/<name>.git`.
    pub fn create(dir: &Path, name: &str) -> Result<GitRepository> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        let path = std::path::absolute(dir.join(format!("{name}.git")))
            .map_err(|e| Error::io(format!("resolve {}", dir.display()), e))?;
        let repository = GitRepository {
            git: assets::find_binary("git", true)?,
            path,
            commit_lock: Mutex::new(()),
        };
        let mut init = repository.command();
        init.args(["init", "--quiet", "--bare", "--initial-branch", BRANCH])
            .arg(&repository.path);
        repository.run(&mut init, None)?;
        Ok(repository)
    }

    /// Creates an empty bare repository in the shared control plane's run directory,
    /// `git/<name>-<n>.git`, a new one on every call.
    pub fn temporary(name: &str) -> Result<GitRepository> {
        static CREATED: AtomicU32 = AtomicU32::new(0);
        let dir = GitRepository::temporary_dir(ControlPlane::shared());
        let number = CREATED.fetch_add(1, Ordering::Relaxed);
        GitRepository::create(&dir, &format!("{name}-{number}"))
    }

    /// Where [`GitRepository::temporary`] puts repositories: `<run dir>/git`.
    pub fn temporary_dir(control_plane: &ControlPlane) -> PathBuf {
        control_plane.run_dir().join("git")
    }

    /// `file:///…/<name>.git`, the `repoURL` for an Argo CD Application. (Flux wants
    /// [`GitHttpServer::url`].)
    pub fn url(&self) -> String {
        format!("file://{}", self.path.display())
    }

    /// The bare repository's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The commit [`BRANCH`] points at, if there is one yet.
    pub fn head(&self) -> Result<Option<String>> {
        let mut rev_parse = self.command();
        rev_parse.args(["rev-parse", "--quiet", "--verify"]);
        rev_parse.arg(format!("refs/heads/{BRANCH}^{{commit}}"));
        let output = rev_parse
            .output()
            .map_err(|e| Error::io("run git rev-parse", e))?;
        Ok(output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned()))
    }

    /// Commits `files` (path in the repository, contents) onto [`BRANCH`]; files of
    /// earlier commits that are not named stay. Returns the commit's SHA.
    pub fn commit<P, C>(&self, message: &str, files: &[(P, C)]) -> Result<String>
    where
        P: AsRef<str>,
        C: AsRef<str>,
    {
        self.commit_changes(message, |index| {
            for (path, contents) in files {
                let blob = self.hash_object(contents.as_ref())?;
                let mut add = index.command(self);
                add.args(["update-index", "--add", "--cacheinfo"])
                    .arg(format!("100644,{blob},{}", path.as_ref()));
                self.run(&mut add, None)?;
            }
            Ok(())
        })
    }

    /// Commits the removal of `paths` from [`BRANCH`]. Returns the commit's SHA.
    pub fn remove(&self, message: &str, paths: &[&str]) -> Result<String> {
        self.commit_changes(message, |index| {
            // Mode 0 drops an entry; `--force-remove` would want a work tree.
            let entries: String = paths
                .iter()
                .map(|path| format!("0 {NO_OBJECT}\t{path}\n"))
                .collect();
            let mut remove = index.command(self);
            remove.args(["update-index", "--index-info"]);
            self.run(&mut remove, Some(&entries)).map(drop)
        })
    }

    /// Reads the branch's tree into a private index, lets `change` edit it, commits the
    /// result and moves the branch — only from the commit it read.
    fn commit_changes(
        &self,
        message: &str,
        change: impl FnOnce(&PrivateIndex) -> Result<()>,
    ) -> Result<String> {
        let _one_at_a_time = self
            .commit_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let parent = self.head()?;
        let index = PrivateIndex::new(&self.path);
        let mut read_tree = index.command(self);
        match &parent {
            Some(parent) => read_tree.args(["read-tree", parent]),
            None => read_tree.args(["read-tree", "--empty"]),
        };
        self.run(&mut read_tree, None)?;
        change(&index)?;
        let tree = self.run(index.command(self).arg("write-tree"), None)?;

        let mut commit_tree = self.command();
        commit_tree.args(["commit-tree", &tree, "-m", message]);
        if let Some(parent) = &parent {
            commit_tree.args(["-p", parent]);
        }
        let commit = self.run(&mut commit_tree, None)?;

        let mut update_ref = self.command();
        update_ref.args(["update-ref", &format!("refs/heads/{BRANCH}"), &commit]);
        // The old value makes the move conditional; all zeros means "must not exist yet".
        update_ref.arg(
            parent
                .as_deref()
                .unwrap_or("0000000000000000000000000000000000000000"),
        );
        self.run(&mut update_ref, None)?;
        Ok(commit)
    }

    /// Writes `contents` as a blob, returns its SHA.
    fn hash_object(&self, contents: &str) -> Result<String> {
        let mut hash_object = self.command();
        hash_object.args(["hash-object", "-w", "--stdin"]);
        self.run(&mut hash_object, Some(contents))
    }

    /// `git --git-dir <path>`, as [`git_command`] makes it.
    fn command(&self) -> Command {
        let mut command = git_command(&self.git);
        command.arg("--git-dir").arg(&self.path);
        command
    }

    /// Runs a git command, feeding it `stdin`; returns its trimmed stdout.
    fn run(&self, command: &mut Command, stdin: Option<&str>) -> Result<String> {
        let description = format!("{command:?}");
        let mut child = command
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io(format!("start {description}"), e))?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes())
                .map_err(|e| Error::io(format!("write to {description}"), e))?;
        }
        let output = child
            .wait_with_output()
            .map_err(|e| Error::io(format!("wait for {description}"), e))?;
        if !output.status.success() {
            return Err(Error::Git {
                command: description,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }
}

/// `git` with a fixed identity and none of the environment's or the machine's Git
/// settings.
fn git_command(git: &Path) -> Command {
    let mut command = Command::new(git);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("GIT_") {
            command.env_remove(key);
        }
    }
    command
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", IDENTITY.0)
        .env("GIT_AUTHOR_EMAIL", IDENTITY.1)
        .env("GIT_COMMITTER_NAME", IDENTITY.0)
        .env("GIT_COMMITTER_EMAIL", IDENTITY.1);
    command
}

/// An index file of one commit's making, removed afterwards.
struct PrivateIndex {
    path: PathBuf,
}

impl PrivateIndex {
    fn new(repository: &Path) -> PrivateIndex {
        static MADE: AtomicU32 = AtomicU32::new(0);
        let number = MADE.fetch_add(1, Ordering::Relaxed);
        PrivateIndex {
            path: repository.join(format!("testenv-index-{}-{number}", std::process::id())),
        }
    }

    fn command(&self, repository: &GitRepository) -> Command {
        let mut command = repository.command();
        command.env("GIT_INDEX_FILE", &self.path);
        command
    }
}

impl Drop for PrivateIndex {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = assets::runs_root().join(format!("git-unit-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn show(repository: &GitRepository, object: &str) -> Result<String> {
        let mut show = repository.command();
        show.args(["show", object]);
        repository.run(&mut show, None)
    }

    #[test]
    fn commits_build_on_each_other_and_removals_remove() {
        let dir = scratch_dir("commits");
        let repository = GitRepository::create(&dir, "manifests").unwrap();
        assert_eq!(repository.head().unwrap(), None);
        assert!(repository.url().starts_with("file:///"));

        let first = repository
            .commit(
                "first",
                &[("a/one.yaml", "one: 1\n"), ("b/two.yaml", "two: 2\n")],
            )
            .unwrap();
        assert_eq!(first.len(), 40);
        assert_eq!(repository.head().unwrap().as_deref(), Some(first.as_str()));

        let second = repository
            .commit("second", &[("a/one.yaml", "one: 11\n")])
            .unwrap();
        assert_eq!(
            show(&repository, &format!("{second}:a/one.yaml")).unwrap(),
            "one: 11"
        );
        assert_eq!(
            show(&repository, &format!("{second}:b/two.yaml")).unwrap(),
            "two: 2"
        );
        assert_eq!(
            show(&repository, &format!("{second}^"))
                .unwrap()
                .lines()
                .next(),
            Some(format!("commit {first}").as_str())
        );

        let third = repository.remove("third", &["b/two.yaml"]).unwrap();
        assert!(show(&repository, &format!("{third}:b/two.yaml")).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_bare_repository_clones_with_its_files() {
        let dir = scratch_dir("clone");
        let repository = GitRepository::create(&dir, "manifests").unwrap();
        let commit = repository.commit("only", &[("x.yaml", "x: 1\n")]).unwrap();
        let checkout = dir.join("checkout");
        let mut clone = Command::new(&repository.git);
        clone
            .args(["clone", "--quiet", &repository.url()])
            .arg(&checkout);
        assert!(clone.status().unwrap().success());
        assert_eq!(
            std::fs::read_to_string(checkout.join("x.yaml")).unwrap(),
            "x: 1\n"
        );
        let head = Command::new(&repository.git)
            .arg("-C")
            .arg(&checkout)
            .args(["rev-parse", "HEAD"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&head.stdout).trim(), commit);
        let _ = std::fs::remove_dir_all(dir);
    }
}
