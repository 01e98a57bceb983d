//! `tunnelscope top`: reads the options, then runs the dashboard on the instances'
//! admin APIs (see the library's `remote`). Wiring only.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tunnelscope::dashboard;
use tunnelscope::remote::{tls_config, Auth, Target, Top};

pub struct Options<'a> {
    pub connect: &'a [String],
    pub token: Option<String>,
    pub token_file: Option<&'a Path>,
    pub ca: Option<&'a Path>,
    pub log_file: &'a PathBuf,
}

/// Exit 2 for what the operator must fix before anything can run.
fn usage(why: String) -> ExitCode {
    eprintln!("error: {why}");
    ExitCode::from(2)
}

pub fn run(o: Options<'_>) -> ExitCode {
    let targets: Vec<Target> = match o.connect.iter().map(|c| Target::parse(c)).collect() {
        Ok(t) => t,
        Err(why) => return usage(why),
    };
    let token = match (o.token, o.token_file) {
        (Some(t), _) => Some(t),
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(text) => text.lines().next().map(|l| l.trim().to_string()),
            Err(e) => return usage(format!("token file {}: {e}", path.display())),
        },
        (None, None) => None,
    };
    let tls = if o.ca.is_some() || targets.iter().any(|t| t.tls) {
        match tls_config(o.ca) {
            Ok(c) => Some(c),
            Err(why) => return usage(why),
        }
    } else {
        None
    };
    if !std::io::stdout().is_terminal() {
        return usage("top needs a terminal (it is the dashboard)".into());
    }
    let mut logging =
        match crate::logging::init("info", crate::logging::Format::Text, false, o.log_file) {
            Ok(l) => l,
            Err(e) => return usage(e.to_string()),
        };
    let n = targets.len();
    crate::block_on(async move {
        let top = Top::start(targets, Auth { token, tls });
        // Subscribe before the first snapshot so nothing falls between them.
        let events = top.subscribe();
        let options = dashboard::Options {
            logs: logging.pane.take(),
            messages: Some(std::sync::Arc::new(top.messages_source())),
            search: Some(std::sync::Arc::new(top.search_source())),
            banner: Some(format!(
                "top: {n} instance{} · commands go to every instance · ? help",
                if n == 1 { "" } else { "s" }
            )),
            ..Default::default()
        };
        dashboard::run_terminal(events, || top.snapshot(), top.control(), options).await?;
        Ok(())
    })
}
