//! Keeps the test servers (etcd, kube-apiserver, ...) on a leash: see `harness::supervisor`.
//! Usage: `envtest-supervisor [--remove-dir DIR]`, requests as JSON lines on stdin.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let mut remove_dir = None;
    while let Some(arg) = args.next() {
        if arg == "--remove-dir" {
            match args.next() {
                Some(dir) => remove_dir = Some(PathBuf::from(dir)),
                None => {
                    eprintln!("envtest-supervisor: --remove-dir needs a directory");
                    return ExitCode::from(2);
                }
            }
        } else {
            eprintln!(
                "envtest-supervisor: unknown argument {arg:?}; usage: envtest-supervisor [--remove-dir DIR]"
            );
            return ExitCode::from(2);
        }
    }
    harness::supervisor::serve(remove_dir);
    ExitCode::SUCCESS
}
