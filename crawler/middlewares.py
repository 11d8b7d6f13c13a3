"""Downloader middleware for the one HTTP request a crawl may make: its list, by URL.

Scrapy's redirect middleware hands the Referer header to the referer spider middleware,
which this crawl switches off (it would process every request the spider yields), and
warns when it cannot. A list fetch has no page to refer from: drop the header.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scrapy.downloadermiddlewares.redirect import RedirectMiddleware

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.http import Response


class ListRedirectMiddleware(RedirectMiddleware):
    def handle_referer(self, request: Request, response: Response) -> None:
        request.headers.pop("Referer", None)

    def _engine_started(self) -> None:
        # The parent looks for the referer middleware here and warns without it.
        pass
