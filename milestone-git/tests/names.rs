//! Our name rules are a subset of git's: every name we accept, the real
//! `git check-ref-format` accepts too; and the derived revisions stay valid.

use std::process::Command;

use milestone_git::names::{check_path, check_ref_name, check_revision};
use milestone_git::{RefName, RepoPath, Revision};
use proptest::prelude::*;

fn git_accepts(full: &str) -> bool {
    Command::new("git")
        // check-ref-format has its own parser without --end-of-options; `full` starts with
        // `refs/`, so it cannot be read as an option.
        .args(["check-ref-format", full])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn git_agrees_on_a_table_of_names() {
    fn check(name: &str, ours: bool) {
        assert_eq!(check_ref_name(name).is_ok(), ours, "our rules on {name:?}");
        if ours {
            assert!(
                git_accepts(&format!("refs/heads/{name}")),
                "git refuses {name:?}"
            );
        }
    }
    check("main", true);
    check("feature/milestone-login", true);
    check("milestone/v1.0_rc-2", true);
    check("UPPER/Case", true);
    check("a..b", false);
    check("x.lock", false);
    check(".x", false);
    check("-x", false);
    check("a b", false);
    check("a@{1}", false);
    // And git refuses these too, so ours is not looser on them.
    for bad in [
        "a..b", "x.lock", "a/.x", "a b", "a@{1}", "a~1", "a^", "a:b", "a?", "a*", "a[b", "a\\b",
        "a//b", "a/", "a.",
    ] {
        assert!(
            !git_accepts(&format!("refs/heads/{bad}")),
            "git accepts {bad:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn every_name_we_accept_git_accepts(name in "[a-zA-Z0-9._/-]{1,24}") {
        if check_ref_name(&name).is_ok() {
            prop_assert!(git_accepts(&format!("refs/heads/{name}")), "git refuses {:?}", name);
            prop_assert!(git_accepts(&format!("refs/tags/{name}")), "git refuses tag {:?}", name);
        }
    }

    #[test]
    fn names_make_valid_revisions(name in "[a-zA-Z0-9._/-]{1,24}", steps in "(~[0-9]{0,2}|\\^[0-9]?){0,3}") {
        if let Ok(r) = RefName::new(&name) {
            prop_assert!(Revision::new(r.as_str()).is_ok());
            let branch = Revision::branch(&r);
            prop_assert!(Revision::new(branch.as_str()).is_ok());
            let with_steps = format!("{}{}", branch, steps);
            prop_assert!(check_revision(&with_steps).is_ok(), "{}", with_steps);
            prop_assert!(Revision::new(Revision::tag(&r).as_str()).is_ok());
        }
    }

    #[test]
    fn nothing_outside_the_charset_is_a_ref_name(prefix in "[a-z]{0,4}", bad in "[^a-zA-Z0-9._/-]", suffix in "[a-z]{0,4}") {
        let name = format!("{prefix}{bad}{suffix}");
        prop_assert!(RefName::new(&name).is_err());
        prop_assert!(Revision::new(&name).is_err() || name.contains(['~', '^']));
    }

    #[test]
    fn paths_never_escape(parts in proptest::collection::vec("[a-z.]{1,4}", 1..5)) {
        let path = parts.join("/");
        if RepoPath::new(&path).is_ok() {
            prop_assert!(!parts.iter().any(|p| p == ".." || p == "."));
            prop_assert!(check_path(&path).is_ok());
        }
    }
}
