//! Command line (hand-rolled: six flags do not justify a parser dependency).

use std::ffi::OsString;
use std::path::PathBuf;

/// File name written by `-g` without a path (the name the seed's README used).
pub const DEFAULT_CONFIG_NAME: &str = "waitress.config.json";

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Stream according to the config file.
    Run {
        /// Config file.
        file: PathBuf,
    },
    /// Validate the config file and exit.
    Check {
        /// Config file.
        file: PathBuf,
    },
    /// Write the commented default config.
    Generate {
        /// Destination; `-` = standard output.
        path: PathBuf,
        /// Overwrite an existing file.
        force: bool,
    },
    /// Print help.
    Help,
    /// Print the version.
    Version,
}

/// One-line usage.
pub const USAGE: &str =
    "usage: waitress -f FILE [--check] | -g [PATH] [--force] | --help | --version";

/// Full `--help` text.
pub fn help_text() -> String {
    format!(
        "waitress {version}: feed server streaming synthetic (or CSV-replayed) time series over ZeroMQ

{USAGE}

Options:
  -f, --file FILE              Stream according to the JSON config FILE.
      --check                  With -f: only validate FILE, print a summary, exit 0 (valid) or 2.
  -g, --generate-config [PATH] Write the commented default config to PATH
                               (default ./{DEFAULT_CONFIG_NAME}; '-' = standard output).
      --force                  With -g: overwrite an existing file.
  -h, --help                   Show this help.
  -V, --version                Show the version.

Config comments: any JSON key starting with \"//\" is ignored, at any depth.
Wire format: see PROTOCOL.md (multipart [topic, JSON header, little-endian payload], v1).
Stop with Ctrl-C or SIGTERM: sends an end-of-stream message and exits 0 (a second signal exits 130).

Exit codes:
  0  success (including a clean stop on SIGINT/SIGTERM)
  1  runtime error (send failure, cannot write the -g file, ...)
  2  usage error or invalid config (the message names the field, e.g. channels[0].waves[1].period)
  3  cannot bind the endpoint (e.g. address already in use)

Examples:
  cd waitress && cargo run -- -f waitress.config.json
  waitress -g my.json && waitress --check -f my.json && waitress -f my.json
  waitress -g - | less
  python -c 'import zmq; s=zmq.Context().socket(zmq.SUB); s.connect(\"tcp://127.0.0.1:1201\"); \\
             s.subscribe(b\"waitress\"); print(s.recv_multipart())'
",
        version = env!("CARGO_PKG_VERSION")
    )
}

fn value_of(
    flag: &str,
    inline: Option<OsString>,
    rest: &mut Vec<OsString>,
) -> Result<OsString, String> {
    if let Some(v) = inline {
        return Ok(v);
    }
    match rest.pop() {
        Some(v) => Ok(v),
        None => Err(format!("{flag} needs a value")),
    }
}

/// Parses the arguments (without the program name).
pub fn parse_args<I: IntoIterator<Item = OsString>>(args: I) -> Result<Command, String> {
    // A stack, so that `pop` yields the next argument.
    let mut rest: Vec<OsString> = args.into_iter().collect();
    rest.reverse();
    let mut file: Option<PathBuf> = None;
    let mut generate: Option<PathBuf> = None;
    let mut check = false;
    let mut force = false;
    let mut help = false;
    let mut version = false;

    while let Some(arg) = rest.pop() {
        let Some(s) = arg.to_str().map(str::to_owned) else {
            return Err(format!(
                "unexpected argument {arg:?} (not valid UTF-8; options are ASCII)"
            ));
        };
        let (flag, inline) = match s.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(OsString::from(v))),
            _ => (s.clone(), None),
        };
        match flag.as_str() {
            "-f" | "--file" => {
                if file.is_some() {
                    return Err("-f/--file given twice".into());
                }
                file = Some(PathBuf::from(value_of(&flag, inline, &mut rest)?));
            }
            "-g" | "--generate-config" => {
                if generate.is_some() {
                    return Err("-g/--generate-config given twice".into());
                }
                let path = match inline {
                    Some(v) => PathBuf::from(v),
                    None => match rest.last().and_then(|a| a.to_str()) {
                        // The optional PATH: the next argument unless it is an option ('-' is a path).
                        Some(next) if next == "-" || !next.starts_with('-') => {
                            PathBuf::from(rest.pop().unwrap_or_default())
                        }
                        _ => PathBuf::from(DEFAULT_CONFIG_NAME),
                    },
                };
                generate = Some(path);
            }
            "--check" if inline.is_none() => check = true,
            "--force" if inline.is_none() => force = true,
            "-h" | "--help" if inline.is_none() => help = true,
            "-V" | "--version" if inline.is_none() => version = true,
            _ if s.starts_with('-') && s.len() > 1 => {
                return Err(format!("unknown option {s:?}"));
            }
            _ => {
                return Err(format!(
                    "unexpected argument {s:?} (the config file goes after -f: waitress -f {s})"
                ));
            }
        }
    }

    if help {
        return Ok(Command::Help);
    }
    if version {
        return Ok(Command::Version);
    }
    match (file, generate) {
        (Some(_), Some(_)) => Err("-f and -g cannot be combined".into()),
        (None, Some(path)) => {
            if check {
                return Err("--check goes with -f FILE, not with -g".into());
            }
            Ok(Command::Generate { path, force })
        }
        (Some(file), None) => {
            if force {
                return Err("--force goes with -g".into());
            }
            Ok(if check {
                Command::Check { file }
            } else {
                Command::Run { file }
            })
        }
        (None, None) => {
            if check {
                Err("--check needs -f FILE".into())
            } else {
                Err("no config given: use -f FILE (or -g to write a default one)".into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, String> {
        parse_args(args.iter().map(OsString::from))
    }

    #[test]
    fn forms() {
        let run = |f: &str| Command::Run { file: f.into() };
        assert_eq!(p(&["-f", "a.json"]), Ok(run("a.json")));
        assert_eq!(p(&["--file", "a.json"]), Ok(run("a.json")));
        assert_eq!(p(&["--file=a.json"]), Ok(run("a.json")));
        assert_eq!(
            p(&["--check", "-f", "a.json"]),
            Ok(Command::Check {
                file: "a.json".into()
            })
        );
        assert_eq!(
            p(&["-g"]),
            Ok(Command::Generate {
                path: DEFAULT_CONFIG_NAME.into(),
                force: false
            })
        );
        assert_eq!(
            p(&["-g", "x.json", "--force"]),
            Ok(Command::Generate {
                path: "x.json".into(),
                force: true
            })
        );
        assert_eq!(
            p(&["-g", "--force"]),
            Ok(Command::Generate {
                path: DEFAULT_CONFIG_NAME.into(),
                force: true
            })
        );
        assert_eq!(
            p(&["-g", "-"]),
            Ok(Command::Generate {
                path: "-".into(),
                force: false
            })
        );
        assert_eq!(p(&["--help"]), Ok(Command::Help));
        assert_eq!(p(&["-f", "x", "-h"]), Ok(Command::Help));
        assert_eq!(p(&["-V"]), Ok(Command::Version));
    }

    #[test]
    fn errors() {
        assert!(p(&[]).is_err());
        assert!(p(&["-f"]).is_err());
        assert!(p(&["--check"]).is_err());
        assert!(p(&["-f", "a", "-g"]).is_err());
        assert!(p(&["a.json"]).unwrap_err().contains("-f a.json"));
        assert!(p(&["--frobnicate"]).unwrap_err().contains("unknown option"));
        assert!(p(&["-f", "a", "-f", "b"]).is_err());
        assert!(p(&["--help=1"]).is_err());
    }

    #[test]
    fn help_has_examples() {
        let h = help_text();
        assert!(h.contains("Examples:"));
        assert!(h.contains("cargo run -- -f waitress.config.json"));
    }
}
