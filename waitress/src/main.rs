//! `waitress` binary: argument handling, exit codes, startup line. See README.md.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use waitress::cli::{self, Command};
use waitress::config::{self, Config};
use waitress::shutdown::Stopper;
use waitress::stream::{self, close_linger_ms, describe_rate, mode_name};
use waitress::transport::{Transport, TransportError};
use waitress::{DEFAULT_CONFIG, EXIT_BIND, EXIT_CONFIG, EXIT_OK, EXIT_RUNTIME};

/// Writes a line to stdout and flushes; a closed stdout is not an error worth dying for.
fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Writes a line to stderr.
fn warn(line: &str) {
    let _ = writeln!(io::stderr().lock(), "{line}");
}

fn main() -> ExitCode {
    ExitCode::from(real_main())
}

fn real_main() -> u8 {
    let cmd = match cli::parse_args(std::env::args_os().skip(1)) {
        Ok(c) => c,
        Err(msg) => {
            warn(&format!(
                "waitress: {msg}\n{}\nTry 'waitress --help'.",
                cli::USAGE
            ));
            return EXIT_CONFIG;
        }
    };
    match cmd {
        Command::Help => {
            say(&cli::help_text());
            EXIT_OK
        }
        Command::Version => {
            say(&format!("waitress {}", env!("CARGO_PKG_VERSION")));
            EXIT_OK
        }
        Command::Generate { path, force } => generate(&path, force),
        Command::Check { file } => match load(&file) {
            Ok(cfg) => {
                let waves: usize = cfg.channels.iter().map(|c| c.waves.len()).sum();
                say(&format!(
                    "waitress: {}: OK: {} channel(s) {}, {waves} wave(s), {} {} format={} rate={}",
                    file.display(),
                    cfg.channels.len(),
                    names_json(&cfg),
                    mode_name(cfg.mode),
                    cfg.endpoint,
                    format_name(&cfg),
                    describe_rate(cfg.pacing)
                ));
                EXIT_OK
            }
            Err(code) => code,
        },
        Command::Run { file } => match load(&file) {
            Ok(cfg) => serve(&cfg),
            Err(code) => code,
        },
    }
}

fn load(file: &Path) -> Result<Config, u8> {
    config::load(file).map_err(|e| {
        warn(&format!("waitress: invalid config {}: {e}", file.display()));
        EXIT_CONFIG
    })
}

fn names_json(cfg: &Config) -> String {
    serde_json::to_string(&cfg.channel_names()).unwrap_or_default()
}

fn format_name(cfg: &Config) -> &'static str {
    match cfg.format {
        config::Format::Binary => "binary",
        config::Format::SeedJson => "seed-json",
    }
}

fn generate(path: &Path, force: bool) -> u8 {
    if path.as_os_str() == "-" {
        let mut out = io::stdout().lock();
        return match out
            .write_all(DEFAULT_CONFIG.as_bytes())
            .and_then(|_| out.flush())
        {
            Ok(()) => EXIT_OK,
            Err(e) => {
                warn(&format!("waitress: cannot write to standard output: {e}"));
                EXIT_RUNTIME
            }
        };
    }
    let mut opts = OpenOptions::new();
    opts.write(true);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let result = opts
        .open(path)
        .and_then(|mut f| f.write_all(DEFAULT_CONFIG.as_bytes()));
    match result {
        Ok(()) => {
            say(&format!(
                "waitress: wrote the default config to {}; run it with: waitress -f {}",
                path.display(),
                path.display()
            ));
            EXIT_OK
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            warn(&format!(
                "waitress: {} already exists; use --force to overwrite it",
                path.display()
            ));
            EXIT_RUNTIME
        }
        Err(e) => {
            warn(&format!("waitress: cannot write {}: {e}", path.display()));
            EXIT_RUNTIME
        }
    }
}

fn serve(cfg: &Config) -> u8 {
    // Handlers first, so that a signal arriving right after the startup line is a clean stop.
    let stopper = match Stopper::on_signals() {
        Ok(s) => s,
        Err(e) => {
            warn(&format!("waitress: cannot install signal handlers: {e}"));
            return EXIT_RUNTIME;
        }
    };
    let transport = match Transport::bind(&cfg.endpoint, cfg.mode, cfg.hwm, cfg.linger_ms) {
        Ok(t) => t,
        Err(e @ TransportError::Bind { .. }) => {
            warn(&format!("waitress: {e}"));
            return EXIT_BIND;
        }
        Err(e) => {
            warn(&format!("waitress: {e}"));
            return EXIT_RUNTIME;
        }
    };
    let seed = cfg.seed.unwrap_or_else(stream::clock_seed);
    say(&format!(
        "waitress {} streaming: endpoint={} mode={} format={} dtype={} chunk={} topic={} rate={} channels={} seed={}{}",
        env!("CARGO_PKG_VERSION"),
        transport.endpoint(),
        mode_name(cfg.mode),
        format_name(cfg),
        cfg.dtype.name(),
        cfg.chunk,
        serde_json::to_string(&cfg.topic).unwrap_or_default(),
        describe_rate(cfg.pacing),
        names_json(cfg),
        seed,
        if cfg.seed.is_none() { " (from clock)" } else { "" },
    ));
    for ch in &cfg.channels {
        for w in &ch.waves {
            warn(&format!(
                "({}:{}) streaming {}",
                cfg.topic,
                ch.name,
                w.describe()
            ));
        }
    }
    match stream::run(cfg, seed, &transport, &stopper) {
        Ok(s) => {
            transport.close(close_linger_ms(cfg, s.reason));
            warn(&format!(
                "waitress: stopped ({}): {} frame(s) in {} message(s){}{}",
                s.reason.name(),
                s.frames,
                s.messages,
                if s.unsent_frames > 0 {
                    format!(", {} frame(s) not sent", s.unsent_frames)
                } else {
                    String::new()
                },
                if s.eos_sent {
                    ", end-of-stream sent"
                } else {
                    ""
                }
            ));
            EXIT_OK
        }
        Err(e) => {
            transport.close(stream::STOP_LINGER_MS);
            warn(&format!("waitress: {e}"));
            EXIT_RUNTIME
        }
    }
}
