//! Command-line options (a handful, parsed by hand: rumqttd's own clap is not ours to lean on).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

pub const USAGE: &str = "\
usage: meta-log-broker [--bind ADDR] [--port N] [--state-file PATH] [--idle-exit SECS]
                       [--detach] [--log-file PATH] [--verbose]

A local MQTT 3.1.1 broker (rumqttd) for the Emacsen of one machine.

  --bind ADDR         address to listen on (default 127.0.0.1)
  --port N            TCP port; 0 picks a free one (default 0)
  --state-file PATH   rendezvous file: written with {\"pid\",\"port\",\"url\",\"started\"} once the
                      broker listens, removed when it exits; PATH.lock is held while it runs,
                      so a second broker with the same PATH prints the first one's URL and exits 0
  --idle-exit SECS    exit after SECS seconds without any connected client (default 0: never)
  --detach            once listening, go on in the background (new session, stdio closed)
                      while the command itself prints the ready line and exits 0: a caller
                      such as Emacs waits for it without becoming the broker's parent
  --log-file PATH     after --detach, append stderr (errors; logs with --verbose) to PATH
  --verbose           log to stderr (RUST_LOG filters rumqttd's log; default info)
  --help, --version

When ready it prints `meta-log-broker listening on mqtt://HOST:PORT` on stdout.
Exit status: 0 stopped by SIGTERM/SIGINT/--idle-exit, or another broker already runs
(its URL printed: `meta-log-broker already running on URL (pid N)`), or --detach succeeded;
1 usage; 2 cannot start (e.g. port in use) or died; 3 another broker holds the lock but is not ready.
";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub bind: IpAddr,
    pub port: u16,
    pub state_file: Option<PathBuf>,
    pub idle_exit: u64,
    pub detach: bool,
    pub log_file: Option<PathBuf>,
    pub verbose: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Run(Options),
    Help,
    Version,
}

/// Parses ARGS (without the program name); accepts `--opt VALUE` and `--opt=VALUE`.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, String> {
    let mut options = Options {
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: 0,
        state_file: None,
        idle_exit: 0,
        detach: false,
        log_file: None,
        verbose: false,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs {what}"))
        };
        match name.as_str() {
            "--bind" => {
                let v = value("an address")?;
                options.bind = v
                    .parse()
                    .map_err(|_| format!("--bind: not an IP address: {v}"))?;
            }
            "--port" => {
                let v = value("a port number")?;
                options.port = v
                    .parse()
                    .map_err(|_| format!("--port: not a port number: {v}"))?;
            }
            "--state-file" => {
                let v = value("a path")?;
                if v.is_empty() {
                    return Err("--state-file: empty path".to_string());
                }
                options.state_file = Some(PathBuf::from(v));
            }
            "--idle-exit" => {
                let v = value("a number of seconds")?;
                options.idle_exit = v
                    .parse()
                    .map_err(|_| format!("--idle-exit: not a number of seconds: {v}"))?;
            }
            "--log-file" => {
                let v = value("a path")?;
                if v.is_empty() {
                    return Err("--log-file: empty path".to_string());
                }
                options.log_file = Some(PathBuf::from(v));
            }
            "--detach" if inline.is_none() => options.detach = true,
            "--verbose" | "-v" if inline.is_none() => options.verbose = true,
            "--help" | "-h" if inline.is_none() => return Ok(Command::Help),
            "--version" | "-V" if inline.is_none() => return Ok(Command::Version),
            _ => return Err(format!("unknown argument: {arg}")),
        }
    }
    Ok(Command::Run(options))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Options, String> {
        match parse(args.iter().map(|s| s.to_string()))? {
            Command::Run(o) => Ok(o),
            other => Err(format!("{other:?}")),
        }
    }

    #[test]
    fn defaults() {
        let o = run(&[]).unwrap();
        assert_eq!(o.bind, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!((o.port, o.idle_exit, o.verbose), (0, 0, false));
        assert_eq!(o.state_file, None);
    }

    #[test]
    fn both_forms() {
        let o = run(&[
            "--port=1883",
            "--bind",
            "0.0.0.0",
            "--state-file",
            "/tmp/b.json",
            "--idle-exit=300",
            "--verbose",
            "--detach",
            "--log-file",
            "/tmp/b.log",
        ])
        .unwrap();
        assert_eq!(o.port, 1883);
        assert_eq!(o.bind.to_string(), "0.0.0.0");
        assert_eq!(o.state_file, Some(PathBuf::from("/tmp/b.json")));
        assert_eq!(o.idle_exit, 300);
        assert!(o.verbose && o.detach);
        assert_eq!(o.log_file, Some(PathBuf::from("/tmp/b.log")));
    }

    #[test]
    fn errors_name_the_option() {
        assert!(run(&["--port", "x"]).unwrap_err().contains("--port"));
        assert!(run(&["--port"]).unwrap_err().contains("--port needs"));
        assert!(run(&["--bind", "localhost"])
            .unwrap_err()
            .contains("--bind"));
        assert!(run(&["--frobnicate"]).unwrap_err().contains("unknown"));
        assert!(run(&["--verbose=1"]).unwrap_err().contains("unknown"));
        assert_eq!(
            parse(["--help".to_string()]).unwrap(),
            Command::Help,
            "--help"
        );
    }
}
