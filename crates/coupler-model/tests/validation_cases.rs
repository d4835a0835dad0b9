//! Data-driven cases for the group rules of [`coupler_model::validate`] and for
//! [`GroupBundle::from_slice`]. Every file under `tests/bundles/` is one named trial.
//!
//! # `tests/bundles/invalid/NN-short-name.yaml` → `invalid::NN-short-name`
//!
//! One file per rule, a YAML wrapper:
//!
//! ```yaml
//! rule: Two connectors share an Id      # the one rule this case breaks
//! options:                              # optional: validate::Options
//!   allow_functions_to_run_as_root: true
//! expect:                               # every problem validate() must report
//!   - path: ConnectorDefinitionVersion.Connectors[1].Id   # exact path
//!     message: is already the id of                         # substring of the message
//! bundle:                               # a complete bundle, otherwise valid
//!   CoreDefinitionVersion: ...
//! ```
//!
//! The bundle is re-encoded as JSON and read with `GroupBundle::from_slice`, as the CLI does.
//! `validate` must fail, and its problems must equal `expect` as a multiset: each expected
//! entry consumes one reported problem with that exact path whose message contains the
//! substring; a problem left over (including one reported twice) or an entry left unmatched
//! fails the trial, which then prints both lists.
//!
//! # `tests/bundles/valid/*.yaml` → `valid::NAME`
//!
//! Plain bundles (no wrapper) that must validate with the default options. A file named
//! `NAME.root.yaml` is validated with `allow_functions_to_run_as_root: true` (the core's
//! `allowFunctionsToRunAsRoot` opt-in), and must be rejected without it. `examples/modbus-twilio.yaml` of the repository is
//! read in place as `valid::example-modbus-twilio`. Each valid bundle must also survive a
//! JSON round trip unchanged.
//!
//! # `tests/bundles/unreadable/*` → `unreadable::NAME`
//!
//! Bytes that `GroupBundle::from_slice` must reject with a `ParseError` (and not panic). The
//! expected variant is the file-name prefix:
//!
//! - `syntax-*`: `ParseError::Syntax` (not JSON or YAML);
//! - `not-utf8-*`: `ParseError::NotUtf8`;
//! - `invalid-*`: `ParseError::Invalid` at an expected path. For a YAML file the first line is
//!   the comment `# path: EXPECTED.PATH` (a comment, so the document is read unchanged); an
//!   optional second line `# message: SUBSTRING` adds a check of the message. A file that
//!   cannot hold a comment (JSON, or an empty file) has a sidecar `FILE.path` holding the
//!   same lines without the `# `.
//!
//! Generated in this runner rather than committed: `generated-deep-json` and
//! `generated-deep-yaml` (10 000 nesting levels: `Invalid` at the first level for JSON, which
//! is read straight into the types; `Syntax` for YAML, at the parser's depth limit) and `generated-too-large`
//! (one byte over `MAX_BUNDLE_BYTES`, `TooLarge`).

use std::path::{Path, PathBuf};

use coupler_model::bundle::{MAX_BUNDLE_BYTES, ParseError};
use coupler_model::{GroupBundle, Options, Problem, validate};
use libtest_mimic::{Arguments, Failed, Trial};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InvalidCase {
    rule: String,
    #[serde(default)]
    options: CaseOptions,
    expect: Vec<Expected>,
    bundle: serde_json::Value,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CaseOptions {
    #[serde(default)]
    allow_functions_to_run_as_root: bool,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Expected {
    path: String,
    message: String,
}

fn bundles_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bundles")
}

fn read(path: &Path) -> Result<Vec<u8>, Failed> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()).into())
}

fn show(problems: &[Problem]) -> String {
    if problems.is_empty() {
        return "    (none)".into();
    }
    problems
        .iter()
        .map(|p| format!("    {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn run_invalid(path: &Path) -> Result<(), Failed> {
    let text = String::from_utf8(read(path)?).map_err(|e| format!("not UTF-8: {e}"))?;
    let case: InvalidCase =
        serde_norway::from_str(&text).map_err(|e| format!("case file is malformed: {e}"))?;
    if case.rule.trim().is_empty() || case.expect.is_empty() {
        return Err("a case needs a rule and at least one expected problem".into());
    }
    let json = serde_json::to_vec(&case.bundle)?;
    let bundle = GroupBundle::from_slice(&json)
        .map_err(|e| format!("the bundle does not parse: {e}\n(rule: {})", case.rule))?;
    let options = Options {
        allow_functions_to_run_as_root: case.options.allow_functions_to_run_as_root,
    };
    let problems = match validate(&bundle, &options) {
        Ok(_) => {
            return Err(format!(
                "rule: {}\nvalidate() accepted the group; expected:\n{}",
                case.rule,
                show_expected(&case.expect)
            )
            .into());
        }
        Err(problems) => problems,
    };
    let mut left: Vec<&Problem> = problems.iter().collect();
    let mut missing = Vec::new();
    for e in &case.expect {
        match left
            .iter()
            .position(|p| p.path == e.path && p.message.contains(&e.message))
        {
            Some(i) => {
                left.remove(i);
            }
            None => missing.push(e),
        }
    }
    if missing.is_empty() && left.is_empty() {
        return Ok(());
    }
    let mut msg = format!(
        "rule: {}\nexpected:\n{}\nactual:\n{}",
        case.rule,
        show_expected(&case.expect),
        show(&problems)
    );
    if !missing.is_empty() {
        msg.push_str("\nnot reported:");
        for e in missing {
            msg.push_str(&format!("\n    {}: …{}…", e.path, e.message));
        }
    }
    if !left.is_empty() {
        msg.push_str("\nnot expected (or reported more than once):");
        for p in left {
            msg.push_str(&format!("\n    {p}"));
        }
    }
    Err(msg.into())
}

fn show_expected(expect: &[Expected]) -> String {
    expect
        .iter()
        .map(|e| format!("    {}: …{}…", e.path, e.message))
        .collect::<Vec<_>>()
        .join("\n")
}

fn run_valid(path: &Path, options: &Options) -> Result<(), Failed> {
    let bytes = read(path)?;
    let bundle = GroupBundle::from_slice(&bytes).map_err(|e| format!("does not parse: {e}"))?;
    validate(&bundle, options)
        .map_err(|problems| format!("validate() rejected the group:\n{}", show(&problems)))?;
    let again = GroupBundle::from_slice(&serde_json::to_vec(&bundle)?)
        .map_err(|e| format!("the bundle, written as JSON, does not parse again: {e}"))?;
    if again != bundle {
        return Err("the bundle changed in a JSON round trip".into());
    }
    if options.allow_functions_to_run_as_root && validate(&bundle, &Options::default()).is_ok() {
        return Err(
            "a *.root.yaml group must need allowFunctionsToRunAsRoot, but validates without it"
                .into(),
        );
    }
    Ok(())
}

/// What an unreadable input must give.
enum Want {
    Syntax,
    NotUtf8,
    TooLarge,
    Invalid {
        path: String,
        message: Option<String>,
    },
}

fn check_unreadable(bytes: &[u8], want: &Want) -> Result<(), Failed> {
    let err = match GroupBundle::from_slice(bytes) {
        Ok(_) => return Err("from_slice accepted the document".into()),
        Err(e) => e,
    };
    let ok = match (want, &err) {
        (Want::Syntax, ParseError::Syntax { .. }) | (Want::NotUtf8, ParseError::NotUtf8(_)) => true,
        (Want::TooLarge, ParseError::TooLarge { size, limit }) => {
            *size == bytes.len() && *limit == MAX_BUNDLE_BYTES
        }
        (
            Want::Invalid { path, message },
            ParseError::Invalid {
                path: p,
                message: m,
            },
        ) => p == path && message.as_ref().is_none_or(|s| m.contains(s.as_str())),
        _ => false,
    };
    if ok {
        return Ok(());
    }
    let wanted = match want {
        Want::Syntax => "Syntax".to_owned(),
        Want::NotUtf8 => "NotUtf8".to_owned(),
        Want::TooLarge => format!("TooLarge {{ size: {}, .. }}", bytes.len()),
        Want::Invalid { path, message } => format!(
            "Invalid at {path}{}",
            message
                .as_ref()
                .map(|m| format!(" with …{m}…"))
                .unwrap_or_default()
        ),
    };
    Err(format!("expected {wanted}\nactual   {err:?}").into())
}

/// The expectation of an `invalid-*` file: its leading comments, or its `.path` sidecar.
fn invalid_expectation(path: &Path, bytes: &[u8]) -> Result<Want, Failed> {
    let sidecar = PathBuf::from(format!("{}.path", path.display()));
    let lines: Vec<String> = if sidecar.exists() {
        String::from_utf8(read(&sidecar)?)?
            .lines()
            .map(str::to_owned)
            .collect()
    } else {
        String::from_utf8_lossy(bytes)
            .lines()
            .map_while(|l| l.strip_prefix("# ").map(str::to_owned))
            .collect()
    };
    let mut path_line = None;
    let mut message = None;
    for l in &lines {
        if let Some(p) = l.strip_prefix("path: ") {
            path_line = Some(p.trim().to_owned());
        } else if let Some(m) = l.strip_prefix("message: ") {
            message = Some(m.trim().to_owned());
        }
    }
    let path = path_line.ok_or("an invalid-* case needs `# path: …` on its first line")?;
    Ok(Want::Invalid { path, message })
}

fn run_unreadable_file(path: &Path) -> Result<(), Failed> {
    let bytes = read(path)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let want = if name.starts_with("syntax-") {
        Want::Syntax
    } else if name.starts_with("not-utf8-") {
        Want::NotUtf8
    } else if name.starts_with("invalid-") {
        invalid_expectation(path, &bytes)?
    } else {
        return Err("the file name must start with syntax-, not-utf8- or invalid-".into());
    };
    check_unreadable(&bytes, &want)
}

/// Sorted regular files of a directory, without the `.path` sidecars.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_file() && p.extension().is_none_or(|x| x != "path"))
        .collect();
    paths.sort();
    paths
}

fn stem(path: &Path) -> String {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    match name.rsplit_once('.') {
        Some((stem, _)) => stem.to_owned(),
        None => name.into_owned(),
    }
}

fn main() {
    let args = Arguments::from_args();
    let root = bundles_dir();
    let mut trials = Vec::new();

    for path in files(&root.join("invalid")) {
        let name = format!("invalid::{}", stem(&path));
        trials.push(Trial::test(name, move || run_invalid(&path)));
    }

    for path in files(&root.join("valid")) {
        let name = stem(&path);
        let options = Options {
            allow_functions_to_run_as_root: name.ends_with(".root"),
        };
        trials.push(Trial::test(format!("valid::{name}"), move || {
            run_valid(&path, &options)
        }));
    }
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/modbus-twilio.yaml");
    trials.push(Trial::test("valid::example-modbus-twilio", move || {
        run_valid(&example, &Options::default())
    }));

    for path in files(&root.join("unreadable")) {
        let name = format!("unreadable::{}", stem(&path));
        trials.push(Trial::test(name, move || run_unreadable_file(&path)));
    }
    trials.push(Trial::test("unreadable::generated-deep-json", || {
        let depth = 10_000;
        let doc = format!(
            "{{\"CoreDefinitionVersion\": {}{}}}",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        // Read straight into the API types, JSON stops at the first level that cannot be a
        // core definition: an error with its path, long before any depth limit.
        match GroupBundle::from_slice(doc.as_bytes()) {
            Err(ParseError::Invalid { path, .. }) if path.starts_with("CoreDefinitionVersion") => {
                Ok(())
            }
            other => Err(
                format!("expected a shape error at CoreDefinitionVersion, got {other:?}").into(),
            ),
        }
    }));
    trials.push(Trial::test("unreadable::generated-deep-yaml", || {
        let depth = 10_000;
        let doc = format!(
            "CoreDefinitionVersion: {}{}\n",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        check_unreadable(doc.as_bytes(), &Want::Syntax)
    }));
    trials.push(Trial::test("unreadable::generated-deep-yaml-block", || {
        // Block mappings rather than flow sequences: another parser path. 2 000 levels of
        // growing indentation are about 2 MB, well within MAX_BUNDLE_BYTES.
        let depth = 2_000;
        let mut doc = String::with_capacity(depth * depth / 2);
        for i in 0..depth {
            doc.push_str(&" ".repeat(i));
            doc.push_str("a:\n");
        }
        check_unreadable(doc.as_bytes(), &Want::Syntax)
    }));
    trials.push(Trial::test("unreadable::generated-too-large", || {
        // Valid JSON, so only the size can be what is wrong with it.
        let mut doc = b"{\"CoreDefinitionVersion\": {\"Cores\": []}}".to_vec();
        doc.resize(MAX_BUNDLE_BYTES + 1, b' ');
        check_unreadable(&doc, &Want::TooLarge)
    }));

    libtest_mimic::run(&args, trials).exit();
}
