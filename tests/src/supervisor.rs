//! Process supervisor: every server a test starts runs as a child of a small helper process
//! (`envtest-supervisor`, a binary of this crate) instead of a child of the test process.
//!
//! Why: the shared control plane lives in a `static`, and statics are never dropped, and a test
//! process can also panic or be killed. The helper reads requests from its stdin; when that pipe
//! reaches EOF — which happens whenever the test process exits, for any reason — it kills all its
//! children by PID, reaps them, and removes the control plane's temporary directory.
//!
//! Protocol: one JSON [`Request`] per line on stdin, one JSON [`Response`] per line on stdout,
//! strictly request/response.

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// A request to the supervisor.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Start `program` with stdin from /dev/null and stdout+stderr appended to `log`.
    Spawn {
        program: PathBuf,
        args: Vec<String>,
        env: Vec<(String, String)>,
        cwd: Option<PathBuf>,
        log: PathBuf,
    },
    /// Send a signal (name such as `SIGKILL`) to a child.
    Signal { pid: u32, signal: String },
    /// SIGTERM, wait up to `grace_ms`, then SIGKILL; reap the child and forget it.
    Stop { pid: u32, grace_ms: u64 },
    /// Is the child still running? (Reaps it if it exited.)
    Status { pid: u32 },
}

/// The supervisor's answer.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<bool>,
    /// How the child ended, e.g. `exit status: 1` or `signal: 9 (SIGKILL)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

struct Supervised {
    pid: u32,
    child: Child,
    exit: Option<ExitStatus>,
}

/// Server side: the body of the `envtest-supervisor` binary. Returns when stdin reaches EOF, after
/// killing every child and removing `remove_dir` (if given).
pub fn serve(remove_dir: Option<PathBuf>) {
    let mut children: VecDeque<Supervised> = VecDeque::new();
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let response = match serde_json::from_str::<Request>(&line) {
            Ok(request) => handle(&mut children, request),
            Err(e) => Response {
                error: Some(format!("bad request: {e}")),
                ..Default::default()
            },
        };
        let Ok(mut text) = serde_json::to_string(&response) else {
            break;
        };
        text.push('\n');
        if stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            break;
        }
    }
    // EOF: the test process is gone (or asked us to finish). Throwaway data: no grace period.
    while let Some(mut s) = children.pop_back() {
        if s.exit.is_none() {
            let _ = kill(Pid::from_raw(s.pid as i32), Signal::SIGKILL);
            let _ = s.child.wait();
        }
    }
    if let Some(dir) = remove_dir {
        // A child may still have been writing right up to the kill: retry a few times.
        for _ in 0..20 {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

fn handle(children: &mut VecDeque<Supervised>, request: Request) -> Response {
    match request {
        Request::Spawn {
            program,
            args,
            env,
            cwd,
            log,
        } => match spawn(&program, &args, &env, cwd.as_deref(), &log) {
            Ok(child) => {
                let pid = child.id();
                children.push_back(Supervised {
                    pid,
                    child,
                    exit: None,
                });
                Response {
                    ok: true,
                    pid: Some(pid),
                    ..Default::default()
                }
            }
            Err(e) => Response {
                error: Some(format!("{e:#}")),
                ..Default::default()
            },
        },
        Request::Signal { pid, signal } => {
            let Some(s) = find(children, pid) else {
                return unknown(pid);
            };
            let sig = match signal.parse::<Signal>() {
                Ok(sig) => sig,
                Err(e) => {
                    return Response {
                        error: Some(format!("signal {signal}: {e}")),
                        ..Default::default()
                    };
                }
            };
            if s.exit.is_some() {
                return Response {
                    ok: true,
                    running: Some(false),
                    exit: s.exit.map(|e| e.to_string()),
                    ..Default::default()
                };
            }
            match kill(Pid::from_raw(pid as i32), sig) {
                Ok(()) => Response {
                    ok: true,
                    ..Default::default()
                },
                Err(e) => Response {
                    error: Some(format!("kill {pid}: {e}")),
                    ..Default::default()
                },
            }
        }
        Request::Stop { pid, grace_ms } => {
            let Some(index) = children.iter().position(|s| s.pid == pid) else {
                return unknown(pid);
            };
            let Some(mut s) = children.remove(index) else {
                return unknown(pid);
            };
            let status = stop(&mut s, Duration::from_millis(grace_ms));
            Response {
                ok: true,
                running: Some(false),
                exit: status.map(|e| e.to_string()),
                ..Default::default()
            }
        }
        Request::Status { pid } => {
            let Some(s) = find(children, pid) else {
                return unknown(pid);
            };
            if s.exit.is_none() {
                s.exit = s.child.try_wait().ok().flatten();
            }
            Response {
                ok: true,
                running: Some(s.exit.is_none()),
                exit: s.exit.map(|e| e.to_string()),
                ..Default::default()
            }
        }
    }
}

fn find(children: &mut VecDeque<Supervised>, pid: u32) -> Option<&mut Supervised> {
    children.iter_mut().find(|s| s.pid == pid)
}

fn unknown(pid: u32) -> Response {
    Response {
        error: Some(format!("no supervised process with pid {pid}")),
        ..Default::default()
    }
}

fn spawn(
    program: &Path,
    args: &[String],
    env: &[(String, String)],
    cwd: Option<&Path>,
    log: &Path,
) -> Result<Child> {
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening log {}", log.display()))?;
    let err = out.try_clone()?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    cmd.spawn()
        .with_context(|| format!("starting {}", program.display()))
}

fn stop(s: &mut Supervised, grace: Duration) -> Option<ExitStatus> {
    if let Some(exit) = s.exit {
        return Some(exit);
    }
    if let Ok(Some(exit)) = s.child.try_wait() {
        return Some(exit);
    }
    let pid = Pid::from_raw(s.pid as i32);
    if !grace.is_zero() {
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(exit)) = s.child.try_wait() {
                return Some(exit);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = kill(pid, Signal::SIGKILL);
    s.child.wait().ok()
}

/// What to run under the supervisor.
#[derive(Clone, Debug)]
pub struct ProcessSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    /// stdout and stderr are appended here.
    pub log: PathBuf,
}

impl ProcessSpec {
    pub fn new(program: impl Into<PathBuf>, log: impl Into<PathBuf>) -> Self {
        ProcessSpec {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            log: log.into(),
        }
    }
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }
}

struct Channel {
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    process: Child,
}

/// Client side: a running `envtest-supervisor`. Dropping it (or [`Supervisor::shutdown`]) closes
/// its stdin, which kills every child and removes the directory it was given.
pub struct Supervisor {
    channel: Mutex<Channel>,
    pid: u32,
}

impl Supervisor {
    /// Starts the supervisor binary. `remove_dir` is deleted when the supervisor finishes.
    pub fn start(exe: &Path, remove_dir: Option<&Path>) -> Result<Arc<Self>> {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(exe);
        if let Some(dir) = remove_dir {
            cmd.arg("--remove-dir").arg(dir);
        }
        // Own process group: Ctrl-C in the terminal reaches only the test process, whose exit then
        // closes our stdin, so cleanup still runs instead of the servers dying half-way.
        cmd.process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut process = cmd
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let stdin = process
            .stdin
            .take()
            .ok_or_else(|| anyhow!("supervisor stdin missing"))?;
        let stdout = process
            .stdout
            .take()
            .ok_or_else(|| anyhow!("supervisor stdout missing"))?;
        let pid = process.id();
        Ok(Arc::new(Supervisor {
            channel: Mutex::new(Channel {
                stdin: Some(stdin),
                stdout: BufReader::new(stdout),
                process,
            }),
            pid,
        }))
    }

    /// PID of the supervisor process itself.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn call(&self, request: &Request) -> Result<Response> {
        let mut channel = self
            .channel
            .lock()
            .map_err(|_| anyhow!("supervisor channel poisoned"))?;
        let mut line = serde_json::to_string(request)?;
        line.push('\n');
        let stdin = channel
            .stdin
            .as_mut()
            .ok_or_else(|| anyhow!("supervisor already shut down"))?;
        stdin
            .write_all(line.as_bytes())
            .context("writing to supervisor")?;
        stdin.flush()?;
        let mut answer = String::new();
        if channel
            .stdout
            .read_line(&mut answer)
            .context("reading from supervisor")?
            == 0
        {
            bail!("supervisor exited");
        }
        let response: Response = serde_json::from_str(&answer)
            .with_context(|| format!("supervisor answer {answer:?}"))?;
        if !response.ok {
            bail!(
                "{}",
                response
                    .error
                    .unwrap_or_else(|| "supervisor request failed".into())
            );
        }
        Ok(response)
    }

    /// Starts a supervised child; returns its PID.
    pub fn spawn(&self, spec: &ProcessSpec) -> Result<u32> {
        let response = self.call(&Request::Spawn {
            program: spec.program.clone(),
            args: spec.args.clone(),
            env: spec.env.clone(),
            cwd: spec.cwd.clone(),
            log: spec.log.clone(),
        })?;
        response
            .pid
            .ok_or_else(|| anyhow!("supervisor did not report a pid"))
    }

    /// Sends `signal` to a supervised child.
    pub fn signal(&self, pid: u32, signal: Signal) -> Result<()> {
        self.call(&Request::Signal {
            pid,
            signal: signal.as_str().to_string(),
        })
        .map(drop)
    }

    /// SIGTERM, then SIGKILL after `grace`; returns how it ended (None if it could not be reaped).
    pub fn stop(&self, pid: u32, grace: Duration) -> Result<Option<String>> {
        Ok(self
            .call(&Request::Stop {
                pid,
                grace_ms: grace.as_millis() as u64,
            })?
            .exit)
    }

    /// `Ok(None)` while running, `Ok(Some(how it ended))` after exit.
    pub fn exit_status(&self, pid: u32) -> Result<Option<String>> {
        let response = self.call(&Request::Status { pid })?;
        Ok(if response.running == Some(true) {
            None
        } else {
            Some(response.exit.unwrap_or_default())
        })
    }

    /// Closes the supervisor's stdin and waits until it has killed its children and cleaned up.
    pub fn shutdown(&self) -> Result<()> {
        let mut channel = self
            .channel
            .lock()
            .map_err(|_| anyhow!("supervisor channel poisoned"))?;
        drop(channel.stdin.take());
        channel.process.wait().context("waiting for supervisor")?;
        Ok(())
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// A process started through a [`Supervisor`]; stopped (SIGTERM, then SIGKILL after 5 s) on drop.
pub struct SupervisedProcess {
    supervisor: Arc<Supervisor>,
    pid: u32,
    log: PathBuf,
    stopped: bool,
}

impl SupervisedProcess {
    pub fn start(supervisor: Arc<Supervisor>, spec: &ProcessSpec) -> Result<Self> {
        let pid = supervisor.spawn(spec)?;
        Ok(SupervisedProcess {
            supervisor,
            pid,
            log: spec.log.clone(),
            stopped: false,
        })
    }
    pub fn pid(&self) -> u32 {
        self.pid
    }
    /// File receiving the process's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log
    }
    /// The log's contents (empty if unreadable); handy in assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    pub fn signal(&self, signal: Signal) -> Result<()> {
        self.supervisor.signal(self.pid, signal)
    }
    /// `None` while running, otherwise how it ended.
    pub fn exit_status(&self) -> Result<Option<String>> {
        self.supervisor.exit_status(self.pid)
    }
    /// Stops it now (SIGTERM, SIGKILL after `grace`) and returns how it ended.
    pub fn stop(mut self, grace: Duration) -> Result<Option<String>> {
        self.stopped = true;
        self.supervisor.stop(self.pid, grace)
    }
}

impl Drop for SupervisedProcess {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.supervisor.stop(self.pid, Duration::from_secs(5));
        }
    }
}
