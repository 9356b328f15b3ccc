//! What a caller may do with a file now, and why the rest of what its stage offers is withheld
//! (`allowedActions` and `withheldActions` in a file's status). Built from the same rules the
//! routes and the workflow's guards enforce, so a client that offers only the allowed actions
//! never offers one the API would refuse: the four-eyes rule is [`workflow::four_eyes_refusal`]
//! itself, and each withheld action carries the code the API would refuse it with.

use crate::domain::{ApprovalStage, Principal, Stage};
use crate::workflow;

use super::FileView;

/// Something a person can do to a file, as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    ApproveUpload,
    ApproveDownload,
    Reject,
    RequestChanges,
    Withdraw,
    SendNewVersion,
    Revoke,
    Download,
    AddNote,
}

impl Action {
    pub const ALL: [Action; 9] = [
        Action::ApproveUpload,
        Action::ApproveDownload,
        Action::Reject,
        Action::RequestChanges,
        Action::Withdraw,
        Action::SendNewVersion,
        Action::Revoke,
        Action::Download,
        Action::AddNote,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::ApproveUpload => "approveUpload",
            Action::ApproveDownload => "approveDownload",
            Action::Reject => "reject",
            Action::RequestChanges => "requestChanges",
            Action::Withdraw => "withdraw",
            Action::SendNewVersion => "sendNewVersion",
            Action::Revoke => "revoke",
            Action::Download => "download",
            Action::AddNote => "addNote",
        }
    }
}

/// Why an action the stage offers is not the caller's to take: the refusal code the API
/// would answer it with (docs/API.md, "Errors"), and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withheld {
    pub action: Action,
    pub code: &'static str,
    pub message: String,
}

/// Who is asking, as the edge resolved them without refusing anyone.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// Whoever the credential names (an uploader's or a reviewer's token, a signed-in
    /// person); `None` for nobody in particular.
    pub person: Option<Principal>,
    /// The reviewer they decide as, when they may review (`anonymous` where decisions are not
    /// authenticated).
    pub reviewer: Option<Principal>,
    /// Whether they may revoke an approval.
    pub revoker: bool,
}

/// The actions `view`'s stage offers, each allowed to `caller` or withheld with the reason.
pub fn actions(view: &FileView, caller: &Caller) -> (Vec<Action>, Vec<Withheld>) {
    let mut allowed = Vec::new();
    let mut withheld = Vec::new();
    for action in Action::ALL {
        match check(view, caller, action) {
            Check::NotOffered => {}
            Check::Allowed => allowed.push(action),
            Check::Withheld(code, message) => withheld.push(Withheld {
                action,
                code,
                message,
            }),
        }
    }
    (allowed, withheld)
}

/// Whether `reviewer` may approve `view` now: what the inbox lists.
pub fn may_approve(view: &FileView, reviewer: &Principal) -> bool {
    let caller = Caller {
        person: Some(reviewer.clone()),
        reviewer: Some(reviewer.clone()),
        revoker: false,
    };
    [Action::ApproveUpload, Action::ApproveDownload]
        .into_iter()
        .any(|a| matches!(check(view, &caller, a), Check::Allowed))
}

enum Check {
    /// The stage does not offer it (approving a download while the upload is reviewed).
    NotOffered,
    Allowed,
    Withheld(&'static str, String),
}

fn check(view: &FileView, caller: &Caller, action: Action) -> Check {
    let stage = view.stage();
    let awaiting = match stage {
        Stage::AwaitingUploadApproval => Some(ApprovalStage::Upload),
        Stage::AwaitingDownloadApproval => Some(ApprovalStage::Download),
        _ => None,
    };
    match action {
        Action::ApproveUpload | Action::ApproveDownload => {
            let wanted = match action {
                Action::ApproveUpload => ApprovalStage::Upload,
                _ => ApprovalStage::Download,
            };
            if awaiting != Some(wanted) {
                return Check::NotOffered;
            }
            let Some(reviewer) = as_reviewer(caller) else {
                return not_a_reviewer(caller);
            };
            approval_check(view, wanted, &reviewer)
        }
        Action::Reject | Action::RequestChanges => {
            if awaiting.is_none() {
                return Check::NotOffered;
            }
            // Anyone who reviews may stop a file or send it back, the uploader included.
            match as_reviewer(caller) {
                Some(_) => Check::Allowed,
                None => not_a_reviewer(caller),
            }
        }
        Action::Withdraw | Action::SendNewVersion => {
            let offered = match action {
                Action::Withdraw => awaiting.is_some() || stage == Stage::ChangesRequested,
                _ => stage == Stage::ChangesRequested,
            };
            if !offered {
                return Check::NotOffered;
            }
            uploader_check(view, caller, action)
        }
        Action::Revoke => {
            if stage != Stage::Approved {
                return Check::NotOffered;
            }
            match (as_reviewer(caller), caller.revoker) {
                (Some(_), true) => Check::Allowed,
                (Some(r), false) => Check::Withheld(
                    "NotAReviewer",
                    format!("{r} may review but does not have the role that revoking needs"),
                ),
                (None, _) => not_a_reviewer(caller),
            }
        }
        Action::Download => match stage {
            Stage::Approved => Check::Allowed,
            _ => Check::NotOffered,
        },
        Action::AddNote => match view {
            FileView::Uploaded { .. } => Check::NotOffered,
            FileView::Workflow { .. } => match as_reviewer(caller) {
                Some(_) => Check::Allowed,
                None => not_a_reviewer(caller),
            },
        },
    }
}

fn as_reviewer(caller: &Caller) -> Option<Principal> {
    caller.reviewer.clone()
}

fn not_a_reviewer(caller: &Caller) -> Check {
    match &caller.person {
        Some(person) => Check::Withheld(
            "NotAReviewer",
            format!("{person} may upload but not review"),
        ),
        None => Check::Withheld("Unauthorized", "sign in as a reviewer first".into()),
    }
}

/// The four-eyes rules and the reviewer's own earlier approval, on the version under review
/// (a summary's approvals are that version's decisions only).
fn approval_check(view: &FileView, stage: ApprovalStage, reviewer: &Principal) -> Check {
    let FileView::Workflow { summary, .. } = view else {
        return Check::NotOffered;
    };
    let current = &summary.approvals;
    if let Some(refusal) = workflow::four_eyes_refusal(&summary.file, current, stage, reviewer) {
        return Check::Withheld(refusal.code, refusal.message);
    }
    let already = current
        .iter()
        .any(|d| d.stage == stage && d.approved && d.principal().same_person(reviewer));
    if already {
        return Check::Withheld(
            "AlreadyDecided",
            format!("{reviewer} already approved this stage; it waits for another reviewer"),
        );
    }
    Check::Allowed
}

/// Only the file's uploader takes it back or sends a new version; a file uploaded by nobody in
/// particular has nobody who may.
fn uploader_check(view: &FileView, caller: &Caller, action: Action) -> Check {
    let uploader = match view {
        FileView::Workflow { summary, .. } => summary.file.uploader.as_ref(),
        FileView::Uploaded { record, .. } => record.uploader.as_ref(),
    };
    let what = match action {
        Action::Withdraw => "withdraw it",
        _ => "send a new version",
    };
    match (&caller.person, uploader) {
        (Some(person), Some(uploader)) if uploader.same_person(person) => Check::Allowed,
        (None, Some(_)) => Check::Withheld(
            "Unauthorized",
            format!("sign in as the file's uploader to {what}"),
        ),
        (Some(person), _) => Check::Withheld(
            "NotTheUploader",
            format!("only the file's uploader may {what}, not {person}"),
        ),
        (None, None) => Check::Withheld(
            "NotTheUploader",
            format!("the file was uploaded anonymously: nobody may {what}"),
        ),
    }
}
