//! Turns a Kratos `uiContainer` into plain view data for the one generic flow template.
//!
//! Kratos decides *what* to ask (which inputs, which buttons, which messages); this module only
//! decides how to lay it out. Every page (login, registration, settings, verification, recovery)
//! goes through here, so a new Kratos method or a changed form needs no code change.
//!
//! All strings stay raw here: askama escapes them when the template renders.

use serde_json::Value;

use crate::kratos::{UiContainer, UiNode, UiText};

/// Which page is drawing the flow; it only changes the wording of provider buttons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wording {
    SignIn,
    SignUp,
    Neutral,
}

/// One `uiText`, ready to print.
#[derive(Debug, Clone)]
pub struct MessageView {
    pub id: String,
    /// `info`, `error` or `success`; also used as a CSS class suffix.
    pub kind: String,
    pub text: String,
}

impl MessageView {
    pub fn from_text(text: &UiText) -> Self {
        let id = match &text.id {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        let kind = match text.kind.as_str() {
            "error" | "success" => text.kind.clone(),
            _ => "info".to_owned(),
        };
        Self {
            id,
            kind,
            text: text.text.clone(),
        }
    }
}

/// How a node is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// `<input>` of a text-like or hidden type.
    Input,
    /// `<input type="checkbox">`.
    Checkbox,
    /// `<button type="submit">`: Kratos' `submit` inputs carry the method or provider as value.
    Button,
    /// A button that only works with Ory's JavaScript (WebAuthn/passkeys); shown disabled so the
    /// page stays honest about what it cannot do without scripts.
    ScriptButton,
    Text,
    Image,
    Anchor,
}

/// One node, flattened to what the template prints.
#[derive(Debug, Clone)]
pub struct NodeView {
    pub kind: NodeKind,
    pub name: String,
    pub input_type: String,
    pub value: Option<String>,
    pub label: Option<String>,
    pub required: bool,
    pub disabled: bool,
    pub checked: bool,
    pub autocomplete: Option<String>,
    pub pattern: Option<String>,
    pub maxlength: Option<i64>,
    /// Skips the browser's own `required` check: a "resend code" or "back" button must work
    /// while the code field is still empty.
    pub formnovalidate: bool,
    pub testid: Option<String>,
    /// `href` of anchors, `src` of images; only ever `http(s):`, `data:image/` or relative.
    pub url: String,
    pub width: Option<i64>,
    pub height: Option<i64>,
    /// The DOM id of text nodes (Kratos gives e.g. `lookup_secret_codes`).
    pub dom_id: String,
    pub messages: Vec<MessageView>,
}

impl NodeView {
    pub fn is_input(&self) -> bool {
        self.kind == NodeKind::Input
    }
    pub fn is_hidden(&self) -> bool {
        self.kind == NodeKind::Input && self.input_type == "hidden"
    }
    pub fn is_checkbox(&self) -> bool {
        self.kind == NodeKind::Checkbox
    }
    pub fn is_button(&self) -> bool {
        self.kind == NodeKind::Button
    }
    pub fn is_script_button(&self) -> bool {
        self.kind == NodeKind::ScriptButton
    }
    pub fn is_text(&self) -> bool {
        self.kind == NodeKind::Text
    }
    pub fn is_image(&self) -> bool {
        self.kind == NodeKind::Image
    }
    pub fn is_anchor(&self) -> bool {
        self.kind == NodeKind::Anchor
    }
}

/// One `<form>` on the page. The flow is split per method group so that, for example, the
/// Google button does not sit in the same form as a `required` phone field the browser would
/// insist on before letting the button submit.
#[derive(Debug, Clone)]
pub struct FormView {
    pub group: String,
    pub action: String,
    pub method: String,
    pub nodes: Vec<NodeView>,
}

/// Groups whose buttons carry everything they need, so they only take the hidden default nodes
/// (the CSRF token) and not visible default inputs such as registration traits.
fn is_redirect_group(group: &str) -> bool {
    matches!(group, "oidc" | "saml")
}

/// Kratos first-factor groups; the bridge's `bridge_methods` hint only ever narrows these (second
/// factors such as `totp` are what a step-up flow shows, and are never hidden).
const FIRST_FACTOR_GROUPS: &[&str] = &["oidc", "code", "password", "passkey", "saml"];

/// The first factors the OAuth2 client allows, from the bridge's `bridge_methods` hint in the
/// flow's `return_to` (`?t=...&bridge_methods=oidc,code`); `None` when there is no hint. Only a
/// hint for a better page: the bridge refuses a session from another method whatever is shown.
pub fn allowed_first_factors(return_to: Option<&str>) -> Option<Vec<String>> {
    let return_to = url::Url::parse(return_to?).ok()?;
    let (_, methods) = return_to
        .query_pairs()
        .find(|(name, _)| name == "bridge_methods")?;
    Some(
        methods
            .split(',')
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

/// Splits the container into forms: one per method group, in the order Kratos lists them, each
/// carrying the `default` group nodes (CSRF token, identifier, traits) it needs. With `allowed`
/// (the bridge's methods hint), first-factor groups outside it are left out.
pub fn build_forms(
    ui: &UiContainer,
    wording: Wording,
    allowed: Option<&[String]>,
) -> Vec<FormView> {
    let action = if is_safe_url(&ui.action, false) {
        ui.action.clone()
    } else {
        String::new()
    };
    let method = if ui.method.eq_ignore_ascii_case("get") {
        "get".to_owned()
    } else {
        "post".to_owned()
    };

    let shown = |group: &str| {
        !FIRST_FACTOR_GROUPS.contains(&group)
            || allowed.is_none_or(|allowed| allowed.iter().any(|m| m == group))
    };
    let mut groups: Vec<&str> = Vec::new();
    for node in &ui.nodes {
        if node.group != "default" && !groups.contains(&node.group.as_str()) && shown(&node.group) {
            groups.push(node.group.as_str());
        }
    }
    let defaults: Vec<&UiNode> = ui.nodes.iter().filter(|n| n.group == "default").collect();
    let defaults_have_visible = defaults.iter().any(|n| !is_hidden_input(n));
    // When the hint left out a group, the visible default inputs (the identifier) belong to the
    // first factors left out: drawn alone they would be a field without a button.
    let narrowed = ui
        .nodes
        .iter()
        .any(|n| n.group != "default" && !shown(&n.group));
    if !narrowed && groups.iter().all(|g| is_redirect_group(g)) && defaults_have_visible {
        groups.push("default");
    }

    groups
        .into_iter()
        .map(|group| {
            // The default nodes come first (CSRF token, identifier, traits), then the group's own
            // inputs and buttons, which is the order Kratos lists them in.
            let mut chosen: Vec<&UiNode> = if group == "default" {
                Vec::new()
            } else if is_redirect_group(group) {
                defaults
                    .iter()
                    .copied()
                    .filter(|n| is_hidden_input(n))
                    .collect()
            } else {
                defaults.clone()
            };
            chosen.extend(ui.nodes.iter().filter(|n| n.group == group));
            let has_code_input = chosen
                .iter()
                .any(|n| n.attributes.name.as_deref() == Some("code") && !is_hidden_input(n));
            let nodes = chosen
                .into_iter()
                .filter_map(|n| node_view(n, wording, has_code_input))
                .collect();
            FormView {
                group: group.to_owned(),
                action: action.clone(),
                method: method.clone(),
                nodes,
            }
        })
        .collect()
}

fn is_hidden_input(node: &UiNode) -> bool {
    node.kind == "input" && node.attributes.input_type.as_deref() == Some("hidden")
}

/// Only schemes that cannot run script reach an `href`, `src` or `action`. Kratos is trusted,
/// but a reference UI should not teach copying URLs into markup unchecked.
fn is_safe_url(url: &str, allow_data_image: bool) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    lower.starts_with("https://")
        || lower.starts_with("http://")
        || (lower.starts_with('/') && !lower.starts_with("//"))
        || (allow_data_image && lower.starts_with("data:image/"))
}

fn value_text(value: &Option<Value>) -> Option<String> {
    match value {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    }
}

/// A human name for an OIDC provider id; unknown ids are shown as Kratos calls them.
fn provider_name(id: &str) -> String {
    match id {
        "google" => "Google".to_owned(),
        other => other.to_owned(),
    }
}

fn node_view(node: &UiNode, wording: Wording, form_has_code_input: bool) -> Option<NodeView> {
    let a = &node.attributes;
    let name = a.name.clone().unwrap_or_default();
    let mut view = NodeView {
        kind: NodeKind::Input,
        name: name.clone(),
        input_type: String::new(),
        value: value_text(&a.value),
        label: node.meta.label.as_ref().map(|l| l.text.clone()),
        required: a.required.unwrap_or(false),
        disabled: a.disabled.unwrap_or(false),
        checked: false,
        autocomplete: a.autocomplete.clone(),
        pattern: a.pattern.clone(),
        maxlength: a.maxlength,
        formnovalidate: false,
        testid: None,
        url: String::new(),
        width: a.width,
        height: a.height,
        dom_id: a.id.clone().unwrap_or_default(),
        messages: node.messages.iter().map(MessageView::from_text).collect(),
    };

    match node.kind.as_str() {
        "input" => {
            let input_type = match a.input_type.as_deref() {
                Some(
                    t @ ("hidden" | "text" | "tel" | "email" | "password" | "number" | "url"
                    | "date" | "datetime-local" | "submit" | "button" | "checkbox"),
                ) => t.to_owned(),
                // Missing or unknown to this site: a text box is the safe fallback.
                _ => "text".to_owned(),
            };
            match input_type.as_str() {
                "submit" => {
                    view.kind = NodeKind::Button;
                    view.testid = button_testid(node, &name, form_has_code_input);
                    view.formnovalidate = name != "method" && name != "provider";
                    if name == "provider" && wording != Wording::Neutral {
                        let provider = provider_name(view.value.as_deref().unwrap_or_default());
                        view.label = Some(match wording {
                            Wording::SignUp => format!("Sign up with {provider}"),
                            _ => format!("Sign in with {provider}"),
                        });
                    }
                }
                "button" => view.kind = NodeKind::ScriptButton,
                "checkbox" => {
                    view.kind = NodeKind::Checkbox;
                    view.checked = matches!(a.value, Some(Value::Bool(true)));
                    view.value = Some("true".to_owned());
                }
                _ => view.testid = input_testid(&name, &input_type),
            }
            view.input_type = input_type;
            Some(view)
        }
        "text" => {
            view.kind = NodeKind::Text;
            view.value = a.text.as_ref().map(|t| t.text.clone());
            Some(view)
        }
        "img" => {
            let src = a.src.clone().unwrap_or_default();
            if !is_safe_url(&src, true) {
                return None;
            }
            view.kind = NodeKind::Image;
            view.url = src;
            Some(view)
        }
        "a" => {
            let href = a.href.clone().unwrap_or_default();
            if !is_safe_url(&href, false) {
                return None;
            }
            view.kind = NodeKind::Anchor;
            view.url = href;
            view.label = a.title.as_ref().map(|t| t.text.clone());
            Some(view)
        }
        // `script` and `div` nodes drive Ory's JavaScript widgets (WebAuthn, captcha); this site
        // sends no JavaScript, so there is nothing useful to draw.
        _ => None,
    }
}

fn input_testid(name: &str, input_type: &str) -> Option<String> {
    if input_type == "hidden" {
        return None;
    }
    match name {
        "identifier" | "traits.phone" => Some("phone-input".to_owned()),
        "code" => Some("code-input".to_owned()),
        _ => None,
    }
}

fn button_testid(node: &UiNode, name: &str, form_has_code_input: bool) -> Option<String> {
    let value = value_text(&node.attributes.value).unwrap_or_default();
    match name {
        "provider" => Some(format!("provider-{value}")),
        "resend" => Some("resend-code".to_owned()),
        "screen" => Some("back".to_owned()),
        "method" if form_has_code_input => Some("submit-code".to_owned()),
        "method" => Some("submit-identifier".to_owned()),
        _ => None,
    }
}
