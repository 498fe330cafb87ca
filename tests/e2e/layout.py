"""Does a page fit the screen: for the browser tests that open pages on a phone-sized window."""

from __future__ import annotations

PHONE = {"width": 390, "height": 844}


def overflow(page) -> dict:
    """How far the page is wider than the screen, and the widest element that makes it so."""
    return page.evaluate(
        """() => {
            const width = window.innerWidth;
            const wide = [...document.querySelectorAll('body *')]
                .map(e => [Math.round(e.getBoundingClientRect().right), e.tagName + '.' + e.className])
                .filter(([right]) => right > width + 1).sort((a, b) => b[0] - a[0]);
            return {scroll: document.documentElement.scrollWidth - width, widest: wide[0] || null};
        }"""
    )
