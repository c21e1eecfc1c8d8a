//! `waitress`: the rnnlab feed server. This placeholder only answers `--help` and `--version`;
//! the streaming server arrives with the waitress issue.

fn main() {
    let arg = std::env::args().nth(1);
    match arg.as_deref() {
        Some("--version") | Some("-V") => println!("waitress {}", env!("CARGO_PKG_VERSION")),
        _ => {
            println!(
                "waitress {}: feed server (not implemented yet)",
                env!("CARGO_PKG_VERSION")
            );
            println!("usage: waitress --help | --version");
        }
    }
}
