from setuptools import find_packages, setup

# scrapyd 1.6 imports pkg_resources, which setuptools 81 removed: the pin belongs to
# scrapyd's environment (nodes, and the machine that builds eggs), not to the crawler's.
SCRAPYD = ["scrapyd==1.6.0", "scrapyd-client==2.0.3", "setuptools<81"]

setup(
    name="mxcensus",
    version="0.1.0",
    description="Measure STARTTLS on the mail servers of whole populations of domains",
    python_requires=">=3.11",
    packages=find_packages(
        include=[
            "crawler*",
            "pipelines*",
            "schema*",
            "testnet*",
            "demo*",
            "reports*",
            "benchmarks*",
        ]
    ),
    # Files read at run time, through importlib.resources (an egg is a zip).
    package_data={
        "testnet": ["specs/*.toml"],
        "schema": ["queries/*.sql"],
    },
    # Pinned: the pitfalls in docs/design.md were verified with exactly these.
    # requirements.txt repeats them for scrapyd's environment (tests check they agree).
    install_requires=[
        "Scrapy==2.19.0",
        "Twisted==26.10.0",
        "pyOpenSSL==26.4.0",
        "cryptography==50.0.2",
        "SQLAlchemy==2.1.9",
        "alembic==1.20.1",
        "psycopg2-binary==2.9.13",
        "dnspython==2.9.2",
        "idna==3.20",
        "certifi==2026.10.18",
        "matplotlib==3.11.2",
    ],
    extras_require={
        "scrapyd": SCRAPYD,
        # CI runs the scrapyd integration test: a real scrapyd, a deployed egg.
        "test": ["pytest==9.2.0", "pytest-timeout==2.4.0", "ruff==0.17.6", *SCRAPYD],
    },
    entry_points={"scrapy": ["settings = crawler.settings"]},
)
