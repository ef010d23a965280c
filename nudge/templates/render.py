"""Render: a Decision -> an Email, with Jinja2 in a sandbox with autoescape.

Templates per trigger live next to this module: `<trigger>/subject.txt.j2`,
`preheader.txt.j2`, `body.html.j2` (extends `_layout.html.j2`) and `body.txt.j2`. Data is
never template source: a first name of `{{ 7*7 }}` renders as those characters. HTML parts
are autoescaped; subject and preheader lose control characters and line breaks so no
header can be injected. Every link and image points to an allowed host (nudge/templates/
links.py): checked on the way into the templates and again in what they rendered.

`strict=True` (tests, `render.strict`) makes a missing variable an error naming the template;
in production a missing variable renders empty and is logged once per template and name.
"""

from __future__ import annotations

import logging
import re
from email.utils import formataddr
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import jinja2
from jinja2.environment import TemplateModule
from jinja2.runtime import Macro
from jinja2.sandbox import SandboxedEnvironment

from nudge.core import metrics
from nudge.core.config import Config
from nudge.core.errors import RenderError
from nudge.core.events import Product
from nudge.core.ids import key_digest, log_id
from nudge.core.keyring import Keyring, load_keyring
from nudge.core.records import Decision, Email, EmailContext
from nudge.core.tokens import Purpose, for_email, sign
from nudge.templates.links import LinkPolicy, host_of, product_link

log = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).resolve().parent
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
_warned: set[tuple[str, str]] = set()
_LINES_MAX = 65_536


class _LoggingUndefined(jinja2.ChainableUndefined):
    """Production fallback: render empty, warn once per (template, name)."""

    def _warn(self) -> None:
        key = (str(getattr(self, "_undefined_obj", "")), str(self._undefined_name))
        if key not in _warned:
            _warned.add(key)
            log.warning("template variable %r is undefined; rendering it empty", key[1])

    def __str__(self) -> str:
        self._warn()
        return ""

    def __iter__(self) -> Any:
        self._warn()
        return iter(())

    def __bool__(self) -> bool:
        self._warn()
        return False


_DICT_ATTRIBUTES = frozenset(dir(dict))


class _Sandbox(SandboxedEnvironment):
    """The sandbox, with a shortcut for the template variables, which are plain dicts of
    data. `item.name` on a dict goes through getattr, fails, and falls back to the key;
    the exception made it ~1 µs a lookup, tens per email. The result is the same: a plain
    dict has no attributes beyond dict's own, and those still take the sandbox's path."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        if type(obj) is TemplateModule and not attribute.startswith("_"):
            # `blocks.button`: an imported template's public names are its own macros
            # and variables, nothing of Python's.
            try:
                return getattr(obj, attribute)
            except AttributeError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def call(self, context: Any, obj: Any, *args: Any, **kwargs: Any) -> Any:
        if type(obj) is Macro:
            # A template's own macro: template code, safe by construction. Jinja's checks
            # (two failing getattrs, then the pass-context probes) cost ~3.5 µs a call, and
            # a cart email makes six: 90 -> 69 µs an email, measured.
            kwargs.pop("_block_vars", None)
            kwargs.pop("_loop_vars", None)
            return obj(*args, **kwargs)
        return super().call(context, obj, *args, **kwargs)


def _flat_globals(env: jinja2.Environment) -> None:
    # Jinja keeps a template's globals as a ChainMap over the environment's and iterates
    # it in Python on every render and import (~20 µs an email). They never change after
    # start-up here, so a plain dict does the same in C.
    for template in (env.cache or {}).values():
        if type(template.globals) is not dict:
            template.globals = dict(template.globals)


def one_line(text: str, limit: int = 200) -> str:
    """Header-safe text: no control characters or line breaks, whitespace collapsed."""
    return " ".join(_CONTROL.sub(" ", text).split())[:limit]


@lru_cache(maxsize=65_536)  # product links repeat across emails; the function is pure
def with_utm(url: str, source: str, medium: str, campaign: str, content: str) -> str:
    """Add UTM parameters to a URL, keeping its own query and fragment.

    >>> with_utm("https://s.example/p/1?color=red#top", "nudge", "email", "cart", "stage-1")
    'https://s.example/p/1?color=red&utm_source=nudge&utm_medium=email&utm_campaign=cart&utm_content=stage-1#top'
    """
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return ""  # javascript:, data: and friends never become links
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if not k.startswith("utm_")]
    query += [("utm_source", source), ("utm_medium", medium), ("utm_campaign", campaign),
              ("utm_content", content)]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def link_policy(config: Config) -> LinkPolicy:
    """render.link_hosts (default: the shop's host), plus the hosts of the operator's own
    shop and unsubscribe URLs, and of the tracking links when tracking is on."""
    r = config.render
    hosts = set(r.link_hosts or (host_of(r.shop_url),))
    own = [r.shop_url, r.unsubscribe_url]
    if config.tracking.enabled:
        own.append(config.tracking.base_url)
    hosts.update(h for h in map(host_of, own) if h)
    return LinkPolicy(hosts, r.shop_url)


def _money(value: float, currency: str) -> str:
    symbol = {"EUR": "€", "USD": "$", "GBP": "£"}.get(currency)
    return f"{symbol}{value:,.2f}" if symbol else f"{value:,.2f} {currency}"


class Renderer:
    def __init__(self, config: Config, *, strict: bool | None = None,
                 directory: Path = TEMPLATE_DIR, keyring: Keyring | None = None) -> None:
        self.config = config
        self.keyring = keyring or load_keyring(config.secrets)
        self.strict = config.render.strict if strict is None else strict
        self.env = _Sandbox(
            loader=jinja2.FileSystemLoader(str(directory)),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2"),
                                                default_for_string=True, default=True),
            undefined=jinja2.StrictUndefined if self.strict else _LoggingUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,  # templates are read once at start-up, not stat()ed per email
        )
        # Text parts are plain text: escaping them would show &amp; to the reader. They are
        # never parsed as HTML, and data is never template source, so they stay inert.
        self.text_env = self.env.overlay(autoescape=False)
        self.from_addr = formataddr((config.render.from_name, config.render.from_email))
        self.links = link_policy(config)
        self._templates: dict[tuple[bool, str], jinja2.Template] = {}
        self._strings: dict[str, jinja2.Template] = {}
        # (product, campaign, content) -> (its template line, links and images replaced)
        self._lines: dict[tuple[Product, str, str], tuple[dict[str, Any], int, int]] = {}

    def _variables(self, decision: Decision, ctx: EmailContext,
                   replaced: list[int]) -> dict[str, Any]:
        """The template variables. Every URL in them passed the link policy; `replaced`
        counts [links, images] that did not."""
        r = self.config.render
        campaign, content = decision.trigger, f"stage-{decision.stage}"
        if decision.variant:
            content += f"-{decision.variant}"
        allowed = self.links.allowed

        tracking = self.config.tracking
        lifetime = self.config.secrets.tracking_lifetime

        def tracked(purpose: Purpose, url: str = "") -> str:
            return sign(self.keyring, for_email(
                purpose, decision.customer_id, decision.trigger, decision.episode,
                decision.stage, decision.variant, due=decision.due, lifetime=lifetime, url=url))

        def link(url: str) -> str:
            if not allowed(url):
                replaced[0] += 1
                url = r.shop_url
            url = with_utm(url, r.utm_source, r.utm_medium, campaign, content)
            if tracking.enabled:  # through nudge serve's /c/, which redirects only to `url`
                return f"{tracking.base_url}/c/{tracked('click', url)}"
            return url

        def image(url: str) -> str:
            if not url:
                return ""
            if not allowed(url):
                replaced[1] += 1
                return ""
            return url

        lines = self._lines if not tracking.enabled else None

        def line(item: Product) -> dict[str, Any]:
            # The same products recur email after email: their lines are kept per (product,
            # campaign, content) with the replacements they counted. Not with tracking on:
            # a tracked link is signed for its email. Each email gets its own copy.
            key = (item, campaign, content)
            hit = lines.get(key) if lines is not None else None
            if hit is not None:
                replaced[0] += hit[1]
                replaced[1] += hit[2]
                return dict(hit[0])
            links_before, images_before = replaced
            made = _line(item)
            if lines is not None:
                if len(lines) >= _LINES_MAX:
                    lines.clear()
                lines[key] = (made, replaced[0] - links_before, replaced[1] - images_before)
                return dict(made)
            return made

        def _line(item: Product) -> dict[str, Any]:
            name = item.name
            if "://" in name:  # mail clients make links of URLs in text
                name, n = self.links.clean(name)
                replaced[0] += n
            return {"name": name, "image_url": image(item.image_url),
                    "quantity": item.quantity, "price": _money(item.price, r.currency),
                    "total": _money(item.price * item.quantity, r.currency),
                    "link": link(item.url or product_link(r.shop_url, item.product_id)),
                    "category": item.category}

        token = sign(self.keyring, for_email(
            "unsubscribe", decision.customer_id, decision.trigger, decision.episode,
            decision.stage, decision.variant, due=decision.due,
            lifetime=self.config.secrets.unsubscribe_lifetime))
        incentive = decision.incentive
        return {
            "shop": {"name": r.shop_name, "url": link(r.shop_url)},
            "customer": {"first_name": ctx.first_name, "last_name": ctx.last_name},
            "cart": [line(item) for item in ctx.cart],
            "cart_value": _money(ctx.cart_value, r.currency),
            "cart_url": link(f"{r.shop_url.rstrip('/')}/cart"),
            "viewed": [line(item) for item in ctx.viewed],
            "recommendations": [line(item) for item in ctx.recommendations],
            "incentive": {"text": incentive.text, "code": incentive.code} if incentive else None,
            "propensity": decision.propensity,
            "segments": list(ctx.segments),
            "lifecycle": ctx.lifecycle,
            "preferred_category": ctx.preferred_category,
            "trigger": decision.trigger,
            "variant": decision.variant,
            "stage": decision.stage,
            "episode": decision.episode,
            "unsubscribe_url": r.unsubscribe_url.format(token=token),
            "open_pixel_url": f"{tracking.base_url}/o/{tracked('open')}"
                              if tracking.enabled else "",
        }

    def _render(self, env: jinja2.Environment, name: str, variables: dict[str, Any],
                who: str) -> str:
        try:
            template = self._templates.get((env is self.env, name))
            if template is not None:
                return template.render(variables)
            template = self._templates[env is self.env, name] = env.get_template(name)
            text = template.render(variables)
            _flat_globals(env)  # now with the layouts and imports it loaded on the way
            return text
        except jinja2.TemplateNotFound:
            raise RenderError(f"template {name} not found in {TEMPLATE_DIR}") from None
        except jinja2.UndefinedError as exc:
            raise RenderError(f"template {name} for customer {who}: {exc}") from None
        except jinja2.TemplateError as exc:
            raise RenderError(f"template {name} for customer {who}: "
                              f"{type(exc).__name__}: {exc}") from None

    def _render_string(self, source: str, variables: dict[str, Any], who: str) -> str:
        template = self._strings.get(source)
        try:
            if template is None:
                template = self._strings[source] = self.text_env.from_string(source)
                template.globals = dict(template.globals)  # as _flat_globals
            return template.render(variables)
        except jinja2.TemplateError as exc:
            raise RenderError(f"subject {source[:60]!r} for customer {who}: "
                              f"{type(exc).__name__}: {exc}") from None

    def render(self, decision: Decision) -> Email:
        ctx = decision.context
        if ctx is None or not ctx.email:
            raise RenderError(f"decision {decision.trigger} stage {decision.stage} for "
                              f"customer {log_id(decision.customer_id)} has no email context")
        who = log_id(decision.customer_id)
        replaced = [0, 0]
        variables = self._variables(decision, ctx, replaced)
        base = decision.template or decision.trigger
        if decision.subject:  # an experiment's subject line (operator-written template)
            subject = one_line(self._render_string(decision.subject, variables, who))
        else:
            subject = one_line(self._render(self.text_env, f"{base}/subject.txt.j2", variables,
                                            who))
        preheader = one_line(self._render(self.text_env, f"{base}/preheader.txt.j2", variables,
                                          who))
        variables["subject"] = subject
        variables["preheader"] = preheader
        html, in_html = self.links.sanitise_html(
            self._render(self.env, f"{base}/body.html.j2", variables, who))
        text, in_text = self.links.sanitise_text(
            self._render(self.text_env, f"{base}/body.txt.j2", variables, who))
        if replaced[0] or replaced[1] or in_html or in_text:
            # Data on other hosts (replaced above), or a template's own link (here).
            if replaced[0] + in_html + in_text:
                metrics.LINKS_REPLACED.labels(decision.trigger, "link").inc(
                    replaced[0] + in_html + in_text)
            if replaced[1]:
                metrics.LINKS_REPLACED.labels(decision.trigger, "image").inc(replaced[1])
        r = self.config.render
        unsubscribe = variables["unsubscribe_url"]
        headers: list[tuple[str, str]] = [
            ("List-Unsubscribe", f"<{unsubscribe}>, <mailto:{r.unsubscribe_mailto}"
                                 f"?subject=unsubscribe>"),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            ("X-Nudge-Key", key_digest(decision.idempotency_key)),
        ]
        if r.reply_to:
            headers.append(("Reply-To", r.reply_to))
        return Email(
            key=decision.idempotency_key,
            customer_id=decision.customer_id,
            trigger=decision.trigger,
            episode=decision.episode,
            stage=decision.stage,
            due=decision.due,
            to=ctx.email,
            from_addr=self.from_addr,
            subject=subject,
            preheader=preheader,
            html=html,
            text=text,
            headers=tuple(headers),
            tags=(decision.trigger, f"stage-{decision.stage}",
                  *((f"variant-{decision.variant}",) if decision.variant else ())),
            links_replaced=replaced[0] + replaced[1] + in_html + in_text,
        )


_SHIRT = Product("sku-0042", "Linen Shirt", 49.0, 1, "apparel",
                  "https://shop.example/img/sku-0042.jpg", "https://shop.example/p/sku-0042")
_POUR_OVER = Product("sku-0107", "Ceramic Pour-Over Set", 34.5, 2, "kitchen",
                      "https://shop.example/img/sku-0107.jpg",
                      "https://shop.example/p/sku-0107")
SAMPLE = EmailContext(
    email="ann.lee@example.com", first_name="Ann", last_name="Lee", timezone="Europe/Berlin",
    cart=(_SHIRT, _POUR_OVER), cart_value=118.0, recent=("sku-0042", "sku-0031"),
    preferred_category="apparel", segments=("browse_intent",), lifecycle="active",
    viewed=(_SHIRT, Product("sku-0031", "Canvas Tote", 29.0, 1, "apparel",
                             "https://shop.example/img/sku-0031.jpg",
                             "https://shop.example/p/sku-0031")),
    recommendations=tuple(
        Product(f"sku-01{n}", name, price, 1, "apparel",
                 f"https://shop.example/img/sku-01{n}.jpg", f"https://shop.example/p/sku-01{n}")
        for n, name, price, seed in ((10, "Wool Scarf", 39.0, "scarf"),
                                     (11, "Leather Belt", 45.0, "belt"),
                                     (12, "Cotton Socks (3)", 15.0, "socks"))),
)


def preview(config: Config, trigger: str, out_path: Path, *,
            context: EmailContext | None = None, stage: int = 1) -> Path:
    """Render a sample customer's email to a standalone HTML page."""
    from nudge.core.records import Incentive
    from nudge.core.timefmt import parse_iso

    incentive = Incentive(config.model.incentive_text, config.model.incentive_code)
    decision = Decision("sample-customer", trigger, 1, stage,
                        parse_iso("2026-10-05T11:00:00Z"), "sent", None, context or SAMPLE,
                        template=config.trigger(trigger).stages[stage - 1].template
                        if trigger in {t.name for t in config.triggers} else trigger,
                        incentive=incentive)
    email = Renderer(config).render(decision)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(email.html, encoding="utf-8")
    return out_path
