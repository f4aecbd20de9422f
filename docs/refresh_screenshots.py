"""Copy the browser tests' screenshots into docs/screenshots/ for the README, cropped and
palette-reduced so the repository stays small: `make screenshots` runs the tests, then this."""

from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "test-output" / "browser"
TARGET = ROOT / "docs" / "screenshots"
# each page and how much of its height the README shows
PAGES = {
    "signin-phone": 844,
    "caseload-phone": 1500,
    "person-phone": 2800,
    "caseload-desktop": 1500,
    "person-desktop": 2400,
    "person-en-desktop": 1400,
    "programme-desktop": 1400,
    "not-found-desktop": 500,
}

TARGET.mkdir(exist_ok=True)
for name, height in PAGES.items():
    image = Image.open(SOURCE / f"{name}.png").convert("RGB")
    image = image.crop((0, 0, image.width, min(image.height, height)))
    if image.width > 1000:
        image = image.resize((image.width * 3 // 4, image.height * 3 // 4), Image.LANCZOS)
    image.quantize(colors=256, method=Image.Quantize.MAXCOVERAGE).save(
        TARGET / f"{name}.png", optimize=True
    )
    print(TARGET / f"{name}.png")
