from setuptools import find_packages, setup

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
    package_data={"testnet": ["specs/*.toml"], "schema": ["queries/*.sql"]},
    # Pinned: the pitfalls in DESIGN.md were verified with exactly these.
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
        "test": ["pytest==9.2.0", "pytest-timeout==2.4.0", "ruff==0.17.6"],
    },
    entry_points={"scrapy": ["settings = crawler.settings"]},
)
