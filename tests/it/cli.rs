//! The command line's own documentation, as a packager installs it: the completion
//! scripts (one sourced into a real bash and asked to complete), the man page.

use std::process::Command;

fn tunnelscope(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tunnelscope"))
        .args(args)
        .output()
        .expect("run the tunnelscope binary")
}

/// What bash offers after `line` (the completion script sourced first).
fn bash_completes(line: &str) -> Vec<String> {
    let script = String::from_utf8(tunnelscope(&["completions", "bash"]).stdout).unwrap();
    let words: Vec<&str> = line.split(' ').collect();
    let program = format!(
        "{script}\nCOMP_WORDS=({words})\nCOMP_CWORD={cword}\nCOMP_LINE='{line}'\n\
         COMP_POINT=${{#COMP_LINE}}\n_tunnelscope tunnelscope '{cur}' '{prev}'\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        words = words
            .iter()
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(" "),
        cword = words.len() - 1,
        cur = words[words.len() - 1],
        prev = words[words.len() - 2],
    );
    let out = Command::new("bash")
        .args(["--norc", "-c", &program])
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completes_subcommands_and_option_values() {
    assert!(
        bash_completes("tunnelscope de").contains(&"demo".to_string()),
        "subcommands"
    );
    let formats = bash_completes("tunnelscope --log-format ");
    assert!(
        formats.contains(&"json".to_string()) && formats.contains(&"text".to_string()),
        "{formats:?}"
    );
    let shells = bash_completes("tunnelscope completions ");
    assert!(shells.contains(&"zsh".to_string()), "{shells:?}");
}

#[test]
fn every_shell_gets_a_script_and_an_unknown_one_a_clear_error() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = tunnelscope(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.contains("replay") && text.contains("log-format"),
            "{shell}"
        );
    }
    let out = tunnelscope(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tcsh") && err.contains("bash"), "{err}");
}

#[test]
fn the_man_page_documents_every_option_and_subcommand() {
    let out = tunnelscope(&["man"]);
    assert!(out.status.success());
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains(".TH tunnelscope 1"), "a section 1 page");
    for word in [
        "\\-\\-config",
        "\\-\\-log\\-format",
        "\\-\\-headless",
        "check",
        "demo",
        "replay",
        "completions",
    ] {
        assert!(page.contains(word), "{word} missing from the man page");
    }
}
