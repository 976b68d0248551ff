// Body of every courier message (SMS and e-mail) posted to the local SMS sink. The sink stores
// `to`, `body` and `code`; `code` is whichever one-time code the template carries.
function(ctx)
  local d = if 'template_data' in ctx && ctx.template_data != null then ctx.template_data else {};
  local pick(k) = if k in d then d[k] else null;
  local codes = std.prune([pick('login_code'), pick('registration_code'), pick('verification_code'), pick('recovery_code')]);
  {
    to: ctx.recipient,
    subject: if 'subject' in ctx then ctx.subject else null,
    body: ctx.body,
    template_type: ctx.template_type,
    message_type: if 'message_type' in ctx then ctx.message_type else null,
    code: if std.length(codes) > 0 then codes[0] else null,
  }
