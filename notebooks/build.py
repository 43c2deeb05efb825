"""Write the example notebooks from the cells below, without outputs.

    .venv/bin/python notebooks/build.py           # rewrite notebooks/*.ipynb
    .venv/bin/python notebooks/build.py --check   # exit 1 if a stored notebook differs

Editing here (not in Jupyter) keeps the stored notebooks free of outputs and the diffs readable;
tests/test_notebooks.py checks that the stored notebooks are what this script writes, runs each
of them on a fresh kernel and renders the results to HTML.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import nbformat
from nbformat.notebooknode import NotebookNode

HERE = Path(__file__).resolve().parent

Cell = tuple[str, str]  # ("md" | "code", source)


def md(text: str) -> Cell:
    return ("md", textwrap.dedent(text).strip())


def code(text: str) -> Cell:
    return ("code", textwrap.dedent(text).strip())


# -- 01: a tour ------------------------------------------------------------------------------------
TOUR: list[Cell] = [
    md(
        r"""
        # A tour of the context engine

        This notebook ingests **this repository** through two MCP servers — its recent git history through
        the git server (`mcp-server-git`) and its READMEs and engine code through the filesystem
        server (`@modelcontextprotocol/server-filesystem`) — into the embedded store in a temporary
        folder, then looks at what the graph holds (statistics, entity types, the degree
        distribution), draws one neighbourhood as an interactive graph, and compares semantic,
        keyword and hybrid search on the same questions.

        **Time:** about a minute on a 2-core machine (embedding about 900 texts is most of it). **Needs:** git and the `mcp-server-git` package (the
        `notebooks` extra installs it) and Node.js for the filesystem server, which is installed
        with npm on first use; without node the same files are read from disk directly.
        """
    ),
    code(
        r"""
        %matplotlib inline
        import shutil
        import tempfile
        from pathlib import Path

        import matplotlib.pyplot as plt
        import networkx as nx
        import pandas as pd

        from aesoperator import ContextEngine
        from aesoperator.graph_schema.ids import entity_id
        from aesoperator.notebook import GraphView, NotebookProgress, progress_bar
        from aesoperator.notebook.sources import (
            filesystem_server_command,
            filesystem_source,
            git_server_command,
            git_source,
            repository_root,
        )

        pd.set_option("display.max_colwidth", 100)
        REPO = repository_root()
        DATA_DIR = Path(tempfile.mkdtemp(prefix="aesop-tour-"))
        engine = ContextEngine.open(data_dir=DATA_DIR, graph="embedded")
        print(f"repository:  {REPO}")
        print(f"engine data: {DATA_DIR} ({engine.store.backend} store)")
        """
    ),
    md(
        r"""
        ## Ingest the repository through two MCP servers

        Each source is a `SourceDefinition`: which server to start, and which adapter reads it.
        The git adapter walks every local branch and maps commits, their authors and the files they
        touch; the filesystem adapter maps directories and files and cuts each file into passages
        (`Chunk` entities) that are embedded for semantic search. Both ingests are incremental:
        running the cells again fetches only what changed.

        To keep the tour short the git source fetches the newest 150 commits (`max_commits`; each
        later run goes on down the history from where the last one stopped) and the filesystem
        source reads the READMEs, the graph's schema and the engine's search path.
        A pattern without a folder matches that name in every folder, so `README.md` picks up every
        README.
        """
    ),
    code(
        r"""
        # the READMEs, the graph's schema and the engine's search path (its largest part)
        SEARCH_PATH = ["context", "search*", "retrieval", "graph_expansion", "packing", "vectors", "embeddings", "keyword_index"]
        FILES = ["README.md"] + sorted(
            path.relative_to(REPO).as_posix()
            for folder, names in (("aesoperator/engine", SEARCH_PATH), ("aesoperator/graph_schema", ["*"]))
            for name in names
            for path in (REPO / folder).glob(f"{name}.py")
            if path.stat().st_size > 0
        )
        # folders the server does not list at all: caches, build output, test fixtures, and the
        # benchmarks (their README is mostly measured results)
        SKIP_DIRS = [".cache", ".aesop", "*.egg-info", ".*_cache", ".ipynb_checkpoints", "notebooks", "fixtures", "results"]
        SKIP_DIRS += ["benchmarks"]
        MAX_COMMITS = 150  # the newest commits; running this cell again fetches the next 150 down the history
        print(f"{len(FILES)} file patterns, e.g. {FILES[:3]}")

        reports = {}
        git = git_server_command()
        if git.command is None:
            print(f"Skipping the git history: {git.reason}.")
        else:
            reports["git history (mcp-server-git)"] = engine.ingest_source(
                git_source(REPO, git.command, name="repo-git", max_commits=MAX_COMMITS), progress=NotebookProgress()
            )
        """
    ),
    code(
        r"""
        fs = filesystem_server_command(REPO)
        if fs.command is None:
            print(f"The filesystem MCP server cannot run here: {fs.reason}.")
            print("Reading the same files from disk instead (the same mapping, without MCP).")
            reports["files (read from disk)"] = engine.ingest_path(
                REPO, name="repo-files", include=FILES, progress=NotebookProgress()
            )
        else:
            source = filesystem_source(REPO, fs.command, include=FILES, exclude=SKIP_DIRS, name="repo-files")
            reports["files (server-filesystem)"] = engine.ingest_source(source, progress=NotebookProgress())

        pd.DataFrame.from_dict(
            {
                name: {
                    "items seen": r.records_seen,
                    "entities written": r.entities_written,
                    "relations written": r.relations_written,
                    "texts embedded": r.texts_embedded,
                    "skipped": len(r.skipped),
                    "seconds": round(r.seconds, 1),
                }
                for name, r in reports.items()
            },
            orient="index",
        )
        """
    ),
    md(
        r"""
        ## What the graph holds

        `engine.stats_frame()` is the store's statistics as a table; `engine.to_networkx()` copies
        the graph (or a filtered part of it) into networkx for analysis — it works the same on the
        embedded store and on Neo4j.
        """
    ),
    code(
        r"""
        engine.stats_frame()
        """
    ),
    code(
        r"""
        G = engine.to_networkx()
        U = nx.Graph(G)  # undirected, parallel relations merged: for degrees and components
        components = sorted(nx.connected_components(U), key=len, reverse=True)
        print(
            f"{G.number_of_nodes()} entities, {G.number_of_edges()} live relations, "
            f"{len(components)} connected components (the largest holds {len(components[0])} entities)"
        )
        types = pd.Series(dict(G.nodes(data="type")), name="type")
        degree = pd.Series(dict(U.degree()), name="degree")

        fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
        types.value_counts().sort_values().plot.barh(ax=left, color="#0072B2")
        left.set_title("entities per type")
        left.set_xlabel("entities")
        for kind, group in degree.groupby(types):
            counts = group[group > 0].value_counts().sort_index()
            right.loglog(counts.index, counts.values, "o", alpha=0.7, label=kind)
        right.set_title("degree distribution (log–log)")
        right.set_xlabel("degree (distinct neighbours)")
        right.set_ylabel("entities")
        right.legend(fontsize=8, ncol=2)
        fig.tight_layout()
        plt.show()

        names = pd.Series(dict(G.nodes(data="name")), name="name")
        pd.concat([names, types, degree], axis=1).sort_values("degree", ascending=False).head(10)
        """
    ),
    md(
        r"""
        ## One neighbourhood, interactively

        `engine.neighbors(ids, depth=2)` returns a `Subgraph`; `GraphView` draws it. Drag nodes
        (they stay where you drop them; double-click frees one), zoom with the wheel, drag the
        background to pan, click a node for its details and its neighbours, click the legend to hide
        a type. The view is self-contained: its script is shipped inside the package, nothing is
        loaded from the network, and a static picture shows where scripts do not run.

        The seeds are `aesoperator/engine/context.py` as both sources know it: the git file (linked
        to the commits that changed it, and through them to the other files they changed) and the
        file on disk (linked to its passages and its folder).
        """
    ),
    code(
        r"""
        FOCUS = "aesoperator/engine/context.py"
        seeds = [i for i in (entity_id("repo-git", "file", FOCUS), entity_id("repo-files", "file", FOCUS)) if i in G]
        hood = engine.neighbors(seeds, depth=2, limit=400)
        print(f"{len(hood.entities)} entities within two hops of {FOCUS}")
        GraphView(hood, title=f"two hops around {FOCUS}", max_nodes=150)
        """
    ),
    md(
        r"""
        ## What the text is about: people, systems, concepts

        Ingest also reads the text: the people, organisations, places, systems, concepts and dates
        it names become entities, linked from every chunk, commit or issue that mentions them
        (`MENTIONS`, with the character spans), related to what they appear with in a sentence
        (`CO_OCCURS_WITH`, with the sentence), and merged across sources where the evidence says
        they are one (`SAME_AS`, with the rule). Source files also bring their code symbols
        (`DEFINES`, `IMPORTS`, `CALLS`, `INHERITS`). `engine.entities()` lists what the graph knows,
        most mentioned first; the view shows the most mentioned one with the passages around it.
        """
    ),
    code(
        r"""
        import pandas as pd

        known = engine.entities(limit=15)
        display(pd.DataFrame([(e.name, e.type, e.mentions, len(e.members), ", ".join(e.sources)) for e in known],
                             columns=["entity", "type", "mentions", "merged", "sources"]))
        top = next(e for e in known if e.type not in ("DateTime", "Url"))
        about = engine.neighbors(top.members, depth=1, relation_types=["MENTIONS", "CO_OCCURS_WITH", "SAME_AS"], limit=120)
        GraphView(about, title=f"{top.name}: the passages that mention it and what it appears with", max_nodes=120)
        """
    ),
    code(
        r"""
        # code from the graph: where is it defined, what calls it
        from aesoperator.errors import AesopError

        try:
            reports = engine.code_symbol("run_search")
        except AesopError as exc:  # the tour read only some files
            reports = []
            print(exc)
        for report in reports[:1]:
            print(report.symbol.qualified_name, f"{report.symbol.path}:{report.symbol.start_line}")
            for link in report.incoming[:8]:
                print("  ←", link.type, link.symbol.qualified_name)
        """
    ),
    md(
        r"""
        ## Semantic, keyword and hybrid search side by side

        `search(channels=...)` picks the candidate generators: `("vector",)` is dense retrieval
        alone, `("keyword",)` is BM25 alone, and the default adds exact names, fuses the lists
        (each channel's scores scaled to [0, 1] and added) and expands one hop through the graph.
        The same questions, top 3 of each:
        """
    ),
    code(
        r"""
        QUESTIONS = [
            "how is the vector index kept consistent with the graph store?",
            "reciprocal rank fusion",
            "which commit fixed a test that failed on timing?",
            "a fact that changes is expired, not deleted",
            "token budget for the packed context",
        ]
        MODES = {
            "semantic": {"channels": ("vector",), "hops": 0},
            "keyword": {"channels": ("keyword",), "hops": 0},
            "hybrid": {"channels": ("vector", "keyword", "name"), "hops": 1},
        }
        frames = []
        for question in progress_bar(QUESTIONS, description="questions"):
            for mode, options in MODES.items():
                frame = engine.search(question, k=3, **options).to_dataframe()
                frame.insert(0, "mode", mode)
                frame.insert(0, "question", question)
                frames.append(frame)
        hits = pd.concat(frames, ignore_index=True)
        labelled = hits.assign(hit=hits["rank"].astype(str) + ". " + hits["type"] + ": " + hits["name"])
        side_by_side = (
            labelled.groupby(["question", "mode"], sort=False)["hit"].agg("\n".join).unstack("mode").reindex(
                index=QUESTIONS, columns=list(MODES)
            )
        )
        side_by_side.style.set_properties(**{"white-space": "pre-wrap", "text-align": "left"})
        """
    ),
    md(
        r"""
        Every hit says why it was chosen — its rank in each channel, or the hit it was reached from
        — and where it came from. A `SearchResult` renders as a table; `result.to_dataframe()` gives
        the same rows to pandas.
        """
    ),
    code(
        r"""
        engine.search(QUESTIONS[0], k=5)
        """
    ),
    code(
        r"""
        # how often the modes agree: hits shared by the top 3 of two modes, per question
        ids = hits.groupby(["question", "mode"])["id"].apply(set).to_dict()
        pairs = [("semantic", "keyword"), ("semantic", "hybrid"), ("keyword", "hybrid")]
        pd.DataFrame(
            {f"{a} ∩ {b}": [len(ids.get((q, a), set()) & ids.get((q, b), set())) for q in QUESTIONS] for a, b in pairs},
            index=QUESTIONS,
        )
        """
    ),
    md(
        r"""
        ## Next

        `02_agent_memory.ipynb` stores a conversation as an agent's episodes and looks at what it
        recalls; `03_graph_analytics.ipynb` runs networkx analytics on `engine.to_networkx()`.
        The cell below closes the engine and deletes its temporary folder.
        """
    ),
    code(
        r"""
        engine.close()
        shutil.rmtree(DATA_DIR, ignore_errors=True)
        """
    ),
]


# -- 02: agent memory ------------------------------------------------------------------------------
MEMORY: list[Cell] = [
    md(
        r"""
        # Agent memory across sessions

        An agent keeps state between calls as **episodes**: each turn of a conversation is
        remembered with its agent, session, time and speaker, chained to the turn before it, and
        linked to the entities it names. This notebook stores a conversation of several sessions
        — the first sessions of a LoCoMo conversation when the evaluation data sits in
        `../shared/evaldata/locomo` (or `$AESOP_EVALDATA/locomo`), else a short built-in one — then
        plots the episodes on a timeline, shows what the agent recalls for some questions and why,
        and how memory links to the entities of the graph.

        **Time:** about 30–60 seconds on a 2-core machine (loading the embedding model is most of
        it). Everything lives in the embedded store in a temporary folder.
        """
    ),
    code(
        r"""
        %matplotlib inline
        import json
        import os
        import shutil
        import tempfile
        from datetime import UTC, datetime, timedelta
        from pathlib import Path

        import matplotlib.pyplot as plt
        import pandas as pd

        from aesoperator import ContextEngine
        from aesoperator.graph_schema.ids import entity_id
        from aesoperator.graph_schema.models import Entity, Episode
        from aesoperator.notebook import GraphView, progress_bar
        from aesoperator.notebook.sources import repository_root

        pd.set_option("display.max_colwidth", 120)
        REPO = repository_root()
        DATA_DIR = Path(tempfile.mkdtemp(prefix="aesop-memory-"))
        engine = ContextEngine.open(data_dir=DATA_DIR, graph="embedded")
        AGENT = "companion"
        print(f"engine data: {DATA_DIR} ({engine.store.backend} store)")
        """
    ),
    md(
        r"""
        ## A conversation over several sessions

        Each turn becomes an `Episode`. The LoCoMo data (CC BY-NC 4.0, evaluation use only) is read
        where it lies, never copied; its questions come with the turns that hold the answer
        (`evidence`), so we can check what recall finds.
        """
    ),
    code(
        r"""
        EVALDATA = Path(os.environ.get("AESOP_EVALDATA") or REPO.parent / "shared" / "evaldata")
        LOCOMO = EVALDATA / "locomo" / "locomo_dev.json"
        SESSIONS = 4  # the first sessions of the first conversation


        def load_locomo(path, sessions):
            sample = json.loads(path.read_text(encoding="utf-8"))[0]
            conversation = sample["conversation"]
            turns = []
            for number in range(1, sessions + 1):
                if f"session_{number}" not in conversation:
                    break
                start = datetime.strptime(conversation[f"session_{number}_date_time"], "%I:%M %p on %d %B, %Y")
                for i, turn in enumerate(conversation[f"session_{number}"]):
                    text = turn["text"] + (f" [shares a photo: {turn['blip_caption']}]" if turn.get("blip_caption") else "")
                    turns.append(
                        {
                            "session": number,
                            "when": start.replace(tzinfo=UTC) + timedelta(seconds=40 * i),
                            "speaker": turn["speaker"],
                            "turn": turn["dia_id"],
                            "text": text,
                        }
                    )
            loaded = {t["turn"] for t in turns}
            questions = [
                {"question": qa["question"], "answer": str(qa["answer"]), "evidence": qa["evidence"]}
                for qa in sample["qa"]
                if qa.get("category") in (1, 2, 4) and qa.get("evidence") and set(qa["evidence"]) <= loaded
            ][:6]
            people = [conversation["speaker_a"], conversation["speaker_b"]]
            return f"LoCoMo {sample['sample_id']}", people, turns, questions


        def built_in():
            script = [
                (1, "2026-03-02 09:00", [
                    ("Dana", "Morning! I start at Harbour Labs next week, on the ferry timetable project."),
                    ("Companion", "Congratulations! Who will you be working with on the timetable project?"),
                    ("Dana", "Ravi leads it. He wants the first prototype before the spring schedule change."),
                    ("Companion", "Noted: Ravi leads the project and the prototype is due before spring."),
                    ("Dana", "I also need to renew my bike permit for the Saltholm ferry."),
                ]),
                (2, "2026-03-09 18:30", [
                    ("Dana", "First week at Harbour Labs done. Ravi asked me to model the winter crossings."),
                    ("Companion", "How did the winter crossings model go?"),
                    ("Dana", "Fine, but the Saltholm ferry data has gaps in January."),
                    ("Dana", "Ravi suggested asking Mia from the port authority for the January logs."),
                    ("Companion", "I will remember that Mia at the port authority has the January logs."),
                ]),
                (3, "2026-03-23 12:15", [
                    ("Dana", "Mia sent the January logs, the gaps are filled."),
                    ("Dana", "The prototype is ready; we demo it to the port authority on Friday."),
                    ("Companion", "Good luck with the demo! Did you renew the bike permit?"),
                    ("Dana", "Yes, the permit is renewed until next year."),
                    ("Dana", "Ravi wants to present the timetable project at the harbour conference in May."),
                ]),
            ]
            turns = []
            for session, start, lines in script:
                begin = datetime.fromisoformat(start).replace(tzinfo=UTC)
                for i, (speaker, text) in enumerate(lines):
                    turns.append({"session": session, "when": begin + timedelta(minutes=2 * i), "speaker": speaker,
                                  "turn": f"D{session}:{i + 1}", "text": text})
            questions = [
                {"question": "Who leads the timetable project?", "answer": "Ravi", "evidence": ["D1:3"]},
                {"question": "Who has the January logs?", "answer": "Mia", "evidence": ["D2:4"]},
                {"question": "When is the demo to the port authority?", "answer": "Friday", "evidence": ["D3:2"]},
                {"question": "Was the bike permit renewed?", "answer": "yes", "evidence": ["D3:4"]},
            ]
            return "a built-in conversation", ["Dana", "Ravi", "Mia"], turns, questions


        if LOCOMO.is_file():
            TITLE, PEOPLE, TURNS, QUESTIONS = load_locomo(LOCOMO, SESSIONS)
        else:
            print(f"{LOCOMO} is not there: using a built-in conversation instead.")
            TITLE, PEOPLE, TURNS, QUESTIONS = built_in()
        turns = pd.DataFrame(TURNS)
        print(f"{TITLE}: {len(turns)} turns in {turns['session'].nunique()} sessions; people: {', '.join(PEOPLE)}")
        turns.groupby("session").agg(turns=("turn", "count"), starts=("when", "min"), speakers=("speaker", "unique"))
        """
    ),
    md(
        r"""
        ## Remember

        The people are entities of the graph first, so that remembering can link each turn that names
        one of them (`MENTIONS`). Then the turns are remembered session by session with
        `memory.remember_many`: batched embedding, an `IN_SESSION` link to the session and a `NEXT`
        chain through the session's turns.
        """
    ),
    code(
        r"""
        people = [
            Entity(id=entity_id("people", "person", name), type="Person", name=name, text=f"{name}, a person in {TITLE}",
                   source="people")
            for name in PEOPLE
        ]
        engine.upsert(people)

        stored = []
        for session, group in progress_bar(turns.groupby("session"), total=turns["session"].nunique(), description="sessions"):
            episodes = [
                Episode(
                    content=row.text,
                    agent_id=AGENT,
                    session_id=f"session {session}",
                    created_at=row.when.to_pydatetime(),
                    metadata={"speaker": row.speaker, "turn": row.turn},
                )
                for row in group.itertuples()
            ]
            stored.extend(engine.memory.remember_many(episodes))
        print(f"remembered {len(stored)} episodes; {sum(bool(e.mentions) for e in stored)} of them mention a person")
        engine.stats_frame()
        """
    ),
    md(
        r"""
        ## The timeline

        `memory.episodes(agent)` lists everything the agent remembers, oldest first. Sessions are
        days or weeks apart (top); within one, the turns follow each other minutes apart, so below
        each episode is placed by its turn in the whole conversation, sessions shaded.
        """
    ),
    code(
        r"""
        timeline = pd.DataFrame(
            {
                "when": e.created_at,
                "session": e.session_id,
                "speaker": e.metadata.get("speaker"),
                "turn": e.metadata.get("turn"),
                "mentions": len(e.mentions),
                "content": e.content,
                "id": e.id,
            }
            for e in engine.memory.episodes(AGENT)
        )
        timeline["position"] = range(1, len(timeline) + 1)  # place in the whole conversation
        sessions = timeline.groupby("session", sort=False).agg(
            start=("when", "min"), first=("position", "min"), last=("position", "max"), turns=("turn", "count")
        )
        speakers = sorted(timeline["speaker"].unique())


        def mark_sessions(ax, top):
            for i, (name, row) in enumerate(sessions.iterrows()):
                ax.axvspan(row["first"] - 0.5, row["last"] + 0.5, color="#f2f2f2" if i % 2 else "#ffffff", zorder=0)
                ax.text(row["first"], top, f"{name}, {row['start']:%d %b %Y}", fontsize=8, va="bottom")


        fig, (calendar, turns_ax) = plt.subplots(2, 1, figsize=(12, 5.5), gridspec_kw={"height_ratios": [1, 2]})
        calendar.scatter(sessions["start"], [0] * len(sessions), s=12 * sessions["turns"], color="#009E73", alpha=0.7)
        for name, row in sessions.iterrows():
            calendar.annotate(f"{name}\n{row['turns']} turns", (row["start"], 0), xytext=(0, 12),
                              textcoords="offset points", ha="center", fontsize=8)
        calendar.set_ylim(-1, 1.6)
        calendar.set_yticks([])
        calendar.margins(x=0.08)
        calendar.set_title("the sessions on the calendar")
        for i, speaker in enumerate(speakers):
            mine = timeline[timeline["speaker"] == speaker]
            turns_ax.scatter(mine["position"], [i] * len(mine), s=18 + 40 * mine["mentions"], alpha=0.75, label=speaker)
        mark_sessions(turns_ax, len(speakers) - 0.45)
        turns_ax.set_yticks(range(len(speakers)), speakers)
        turns_ax.set_ylim(-0.6, len(speakers))
        turns_ax.set_xlabel("turn in the conversation")
        turns_ax.set_title(f"the {len(timeline)} episodes of {AGENT!r} (larger: the turn mentions a person)")
        fig.tight_layout()
        plt.show()
        timeline.head()
        """
    ),
    md(
        r"""
        ## What the agent recalls, and why

        `recall` searches only this agent's episodes — by meaning, by words, by exact names, with a
        mild preference for recent ones — and returns each episode with the reasons it was chosen
        and the entities it mentions. The gold column marks the turns the dataset names as the
        evidence for the answer.
        """
    ),
    code(
        r"""
        K = 5
        rows = []
        for q in progress_bar(QUESTIONS, description="questions"):
            result = engine.recall(q["question"], agent_id=AGENT, k=K)
            for rank, r in enumerate(result.episodes, 1):
                rows.append(
                    {
                        "question": q["question"],
                        "rank": rank,
                        "gold": r.episode.metadata.get("turn") in q["evidence"],
                        "turn": r.episode.metadata.get("turn"),
                        "speaker": r.episode.metadata.get("speaker"),
                        "content": r.episode.content,
                        "score": round(r.score, 4),
                        "why": "; ".join(r.reasons),
                        "mentions": ", ".join(e.name for e in r.entities),
                    }
                )
        recalled = pd.DataFrame(rows)
        found = recalled.groupby("question", sort=False)["gold"].any()
        print(f"the evidence is among the top {K} for {int(found.sum())} of {len(found)} questions")
        recalled[recalled["rank"] <= 2]
        """
    ),
    md(
        r"""
        A `RecallResult` renders as a table too (time, session, content, score, reasons):
        """
    ),
    code(
        r"""
        question = QUESTIONS[0]["question"]
        result = engine.recall(question, agent_id=AGENT, k=K)
        print(question, "→", QUESTIONS[0]["answer"])
        result
        """
    ),
    code(
        r"""
        # where the recalled episodes sit in the conversation, for each question
        fig, ax = plt.subplots(figsize=(12, 0.9 + 0.45 * len(QUESTIONS)))
        position = dict(zip(timeline["turn"], timeline["position"]))
        ax.scatter(timeline["position"], [-1] * len(timeline), s=8, color="#bbbbbb")
        for i, q in enumerate(QUESTIONS):
            mine = recalled[recalled["question"] == q["question"]]
            ax.scatter([position[t] for t in mine["turn"]], [i] * len(mine), s=70 - 10 * mine["rank"], color="#0072B2", alpha=0.8)
            gold = [position[t] for t in q["evidence"] if t in position]
            ax.scatter(gold, [i] * len(gold), s=150, facecolors="none", edgecolors="#D55E00", linewidths=1.5)
        mark_sessions(ax, len(QUESTIONS) - 0.4)
        ax.set_ylim(-1.6, len(QUESTIONS) + 0.2)
        ax.set_yticks([-1, *range(len(QUESTIONS))], ["every turn", *[q["question"][:48] for q in QUESTIONS]], fontsize=8)
        ax.set_xlabel("turn in the conversation")
        ax.set_title(f"top {K} recalled episodes (blue, larger = higher) and the evidence turns (orange rings)")
        fig.tight_layout()
        plt.show()
        """
    ),
    md(
        r"""
        ## Memory linked to entities

        Episodes live in the agent's namespace (`agent:companion`), the people in `default`; the
        `MENTIONS` relations join them, so one can step from a person to every turn about them (and
        search over the graph reaches the memories that mention a hit).
        """
    ),
    code(
        r"""
        counts = {}
        for person in people:
            hood = engine.neighbors([person.id], depth=1, relation_types=["MENTIONS"], direction="in")
            sessions = [e.properties.get("session_id") for e in hood.entities.values() if e.type == "Episode"]
            counts[person.name] = pd.Series(sessions, dtype="object").value_counts()
        mentions = pd.DataFrame(counts).fillna(0).astype(int).sort_index()
        mentions.plot.bar(figsize=(8, 3.2), rot=0, title="episodes that mention each person, per session")
        plt.ylabel("episodes")
        plt.tight_layout()
        plt.show()
        mentions
        """
    ),
    code(
        r"""
        # the most mentioned person, the turns that name them, and the sessions those turns belong to
        person = max(people, key=lambda p: int(mentions[p.name].sum()) if p.name in mentions else 0)
        hood = engine.neighbors([person.id], depth=2, relation_types=["MENTIONS", "IN_SESSION"], limit=300)
        GraphView(hood, title=f"{person.name}: mentioning episodes and their sessions", max_nodes=120)
        """
    ),
    md(
        r"""
        Hybrid search over the whole graph finds the person and, through the graph, the memories
        that mention them:
        """
    ),
    code(
        r"""
        engine.search(f"what do we know about {person.name}?", k=6, hops=1)
        """
    ),
    code(
        r"""
        engine.close()
        shutil.rmtree(DATA_DIR, ignore_errors=True)
        """
    ),
]


# -- 03: graph analytics ---------------------------------------------------------------------------
ANALYTICS: list[Cell] = [
    md(
        r"""
        # Graph analytics with networkx

        `engine.to_networkx()` hands the graph to networkx, so everything networkx offers works on
        what the engine ingested. This notebook ingests this repository's recent git history (the
        newest 300 commits) and its files (without embeddings: analytics does not need vectors),
        joins the two sources on file paths, and then looks at **centrality** (who and what is
        central), **communities** (greedy modularity) and **shortest paths** between two people or
        files, with plots.

        **Time:** about 30–60 seconds on a 2-core machine. **Needs:** git and `mcp-server-git`, and
        Node.js for the filesystem server (without node the files are read from disk directly).
        """
    ),
    code(
        r"""
        %matplotlib inline
        import shutil
        import tempfile
        from pathlib import Path

        import matplotlib.pyplot as plt
        import networkx as nx
        import pandas as pd
        from IPython.display import display

        from aesoperator import ContextEngine
        from aesoperator.notebook import GraphView, NotebookProgress, progress_bar
        from aesoperator.notebook.sources import (
            filesystem_server_command,
            filesystem_source,
            git_server_command,
            git_source,
            repository_root,
        )

        pd.set_option("display.max_colwidth", 80)
        REPO = repository_root()
        DATA_DIR = Path(tempfile.mkdtemp(prefix="aesop-analytics-"))
        engine = ContextEngine.open(data_dir=DATA_DIR, graph="embedded")

        # the code, tests, benchmarks and scripts of the checkout (folder prefixes keep out caches)
        INCLUDE = ["README.md", "pyproject.toml", "aesoperator/*.py", "tests/*.py", "benchmarks/*.py", "scripts/*.sh"]
        SKIP_DIRS = [".cache", ".aesop", "*.egg-info", ".*_cache", ".ipynb_checkpoints", "fixtures", "results"]
        git = git_server_command()
        if git.command is None:
            print(f"Skipping the git history: {git.reason}.")
        else:
            # the newest 300 commits: a co-change network needs history, and the time stays bounded
            history = git_source(REPO, git.command, name="repo-git", max_commits=300)
            engine.ingest_source(history, embed=False, progress=NotebookProgress())
        fs = filesystem_server_command(REPO)
        if fs.command is None:
            print(f"The filesystem MCP server cannot run here: {fs.reason}.")
            print("Reading the same files from disk instead (the same mapping, without MCP).")
            engine.ingest_path(REPO, name="repo-files", include=INCLUDE, embed=False, progress=NotebookProgress())
        else:
            source = filesystem_source(REPO, fs.command, include=INCLUDE, exclude=SKIP_DIRS, name="repo-files")
            engine.ingest_source(source, embed=False, progress=NotebookProgress())
        engine.stats_frame().set_index(["group", "name"]).T
        """
    ),
    md(
        r"""
        ## The graph, and a join across sources

        Passages (`Chunk`) hang off their file one by one and say nothing about structure, so they
        are left out with the `types` filter. The git source and the filesystem source each have
        their own `File` entities; in the analysis (not in the store) the two are joined where the
        paths agree, which connects the history (people, commits) to the folder tree.
        """
    ),
    code(
        r"""
        STRUCTURE = ["Repository", "Branch", "Commit", "Person", "File", "Directory"]
        G = engine.to_networkx(types=STRUCTURE)
        by_path = {}
        for node, attrs in G.nodes(data=True):
            if attrs["type"] == "File":
                by_path.setdefault(attrs["name"], []).append(node)
        joined = 0
        for path, nodes in by_path.items():
            for a, b in zip(nodes, nodes[1:]):
                G.add_edge(a, b, key=f"analysis:same-path:{path}", type="SAME_PATH", live=True)
                joined += 1
        U = nx.Graph(G)  # undirected, parallel relations merged
        largest = U.subgraph(max(nx.connected_components(U), key=len)).copy()
        print(f"{G.number_of_nodes()} entities and {G.number_of_edges()} relations ({joined} path joins); "
              f"the largest connected part holds {largest.number_of_nodes()} entities")
        pd.Series(dict(G.nodes(data="type"))).value_counts().to_frame("entities").T
        """
    ),
    md(
        r"""
        ## Centrality

        Three views of importance: **degree** (how many neighbours), **PageRank** (neighbours of
        important neighbours) and **betweenness** (how many shortest paths pass through; sampled
        from 300 sources on large graphs to stay fast).
        """
    ),
    code(
        r"""
        measures = {}
        for name in progress_bar(["degree", "pagerank", "betweenness"], description="centrality"):
            if name == "degree":
                measures[name] = nx.degree_centrality(largest)
            elif name == "pagerank":
                measures[name] = nx.pagerank(largest)
            else:
                k = min(300, largest.number_of_nodes())
                measures[name] = nx.betweenness_centrality(largest, k=k, seed=1)
        central = pd.DataFrame(measures)
        central.insert(0, "type", pd.Series(dict(largest.nodes(data="type"))))
        central.insert(0, "name", pd.Series(dict(largest.nodes(data="name"))))
        central = central.sort_values("pagerank", ascending=False)

        colours = {kind: f"C{i}" for i, kind in enumerate(sorted(central["type"].unique()))}
        fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
        for ax, measure in zip(axes, ["pagerank", "betweenness"]):
            top = central.sort_values(measure, ascending=False).head(15).iloc[::-1]
            ax.barh([n[:40] for n in top["name"]], top[measure], color=[colours[t] for t in top["type"]])
            ax.set_title(f"top 15 by {measure}")
            ax.tick_params(axis="y", labelsize=8)
        handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
        fig.legend(handles, list(colours), loc="lower center", ncol=len(colours), fontsize=8)
        fig.tight_layout(rect=(0, 0.06, 1, 1))
        plt.show()
        central.head(10)
        """
    ),
    md(
        r"""
        ## Communities

        Greedy modularity maximisation (Clauset–Newman–Moore) splits the graph into groups that are
        densely linked inside and sparsely between. Each community is described by its entity types
        and its best-connected members.
        """
    ),
    code(
        r"""
        communities = nx.community.greedy_modularity_communities(largest)
        modularity = nx.community.modularity(largest, communities)
        membership = {node: i + 1 for i, members in enumerate(communities) for node in members}
        summary = pd.DataFrame(
            {
                "community": i + 1,
                "size": len(members),
                "types": ", ".join(
                    f"{t} {n}" for t, n in pd.Series([largest.nodes[m]["type"] for m in members]).value_counts().items()
                ),
                "best connected": ", ".join(
                    largest.nodes[m]["name"][:40]
                    for m in sorted(members, key=lambda m: -largest.degree(m))[:4]
                ),
            }
            for i, members in enumerate(communities)
        )
        print(f"{len(communities)} communities, modularity {modularity:.3f}")

        fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [1, 2]})
        summary.set_index("community")["size"].head(15).plot.bar(ax=left, color="#009E73", rot=0)
        left.set_title("community sizes (largest 15)")
        left.set_ylabel("entities")
        layout = nx.spring_layout(largest, seed=3, k=1.5 / largest.number_of_nodes() ** 0.5)
        nx.draw_networkx_edges(largest, layout, ax=right, alpha=0.15, width=0.6)
        nx.draw_networkx_nodes(
            largest, layout, ax=right, node_size=12, cmap="tab20",
            node_color=[membership[n] % 20 for n in largest.nodes],
        )
        right.set_title(f"the largest connected part, coloured by community (modularity {modularity:.2f})")
        right.axis("off")
        fig.tight_layout()
        plt.show()
        summary.head(10)
        """
    ),
    code(
        r"""
        # the same, interactive: colour by community instead of entity type
        nx.set_node_attributes(largest, {n: f"community {c}" for n, c in membership.items()}, "community")
        GraphView(largest, title="communities", color_by="community", max_nodes=250, labels=False)
        """
    ),
    md(
        r"""
        ## Shortest paths

        Between two people when the history has more than one author, and always between two files:
        the path says how they are related (the same commit, the same folder, ...). The relation
        types along the path come from the edges of the directed graph.
        """
    ),
    code(
        r"""
        def describe_path(path):
            steps = []
            for i, node in enumerate(path):
                relation = ""
                if i + 1 < len(path):
                    nxt = path[i + 1]
                    data = G.get_edge_data(node, nxt) or G.get_edge_data(nxt, node) or {}
                    arrow = "→" if G.has_edge(node, nxt) else "←"
                    relation = f"{arrow} {'/'.join(sorted({d['type'] for d in data.values()}))}"
                steps.append({"step": i, "type": G.nodes[node]["type"], "name": G.nodes[node]["name"], "next": relation})
            return pd.DataFrame(steps)


        people = sorted(
            (n for n, t in largest.nodes(data="type") if t == "Person"), key=lambda n: -largest.degree(n)
        )
        files = sorted(n for n, t in largest.nodes(data="type") if t == "File")
        if len(people) >= 2:
            ends = (people[0], people[1])
            print("between the two most active authors")
        else:
            print(f"the history has {len(people)} author(s): between two files instead")
            def pick(*names):
                for name in names:
                    for node in files:
                        if largest.nodes[node]["name"] == name:
                            return node
                return files[0]
            ends = (pick("README.md"), pick("aesoperator/engine/stores/neo4j.py", "aesoperator/engine/context.py"))
        path = nx.shortest_path(largest, *ends)
        routes = sum(1 for _ in zip(range(1000), nx.all_shortest_paths(largest, *ends)))
        print(f"{len(path) - 1} steps; {routes}{'+' if routes == 1000 else ''} shortest paths of that length")
        describe_path(path)
        """
    ),
    code(
        r"""
        # the path and its surroundings: path nodes in red
        around = set(path)
        for node in path:
            around.update(list(largest.neighbors(node))[:6])
        local = largest.subgraph(around)
        layout = nx.spring_layout(local, seed=5)
        fig, ax = plt.subplots(figsize=(10, 5.5))
        nx.draw_networkx_edges(local, layout, ax=ax, alpha=0.25)
        nx.draw_networkx_edges(local, layout, edgelist=list(zip(path, path[1:])), ax=ax, width=2.5, edge_color="#D55E00")
        nx.draw_networkx_nodes(local, layout, ax=ax, node_size=30, node_color="#9ecae1")
        nx.draw_networkx_nodes(local, layout, nodelist=path, ax=ax, node_size=90, node_color="#D55E00")
        nx.draw_networkx_labels(local, layout, labels={n: local.nodes[n]["name"][:32] for n in path}, font_size=8, ax=ax)
        ax.set_title(f"shortest path from {G.nodes[path[0]]['name']} to {G.nodes[path[-1]]['name']}")
        ax.axis("off")
        fig.tight_layout()
        plt.show()
        GraphView(local, highlight=path, title="the path and its neighbours")
        """
    ),
    md(
        r"""
        ## Files that change together

        Projecting the commit–file part of the graph onto files gives a co-change network: two
        files are linked by the number of commits that touched both. On it, a weighted shortest
        path (distance = 1 / shared commits) prefers strong co-change links; here it runs from the
        file changed most often to the file furthest from it.
        """
    ),
    code(
        r"""
        commits = [n for n, t in G.nodes(data="type") if t == "Commit"]
        touched = nx.Graph()
        for commit in commits:
            for _, target, kind in G.out_edges(commit, data="type"):
                if kind == "MODIFIES":
                    touched.add_edge(commit, target)
        git_files = [n for n in touched if G.nodes[n]["type"] == "File"]
        cochange = nx.bipartite.weighted_projected_graph(touched, git_files) if len(commits) > 1 else nx.Graph()
        if cochange.number_of_edges() == 0:
            print("not enough history for a co-change network")
        else:
            for a, b, data in cochange.edges(data=True):
                data["distance"] = 1 / data["weight"]
            pairs = sorted(cochange.edges(data="weight"), key=lambda e: (-e[2], G.nodes[e[0]]["name"]))[:8]
            display(pd.DataFrame(
                [(G.nodes[a]["name"], G.nodes[b]["name"], w) for a, b, w in pairs],
                columns=["file", "changed with", "commits together"],
            ))
            # from the file changed most often to the file furthest from it along strong links
            start = max(git_files, key=lambda f: (touched.degree(f), G.nodes[f]["name"]))
            reach = nx.single_source_dijkstra_path_length(cochange, start, weight="distance")
            goal = max(reach, key=lambda f: (reach[f], G.nodes[f]["name"]))
            route = nx.dijkstra_path(cochange, start, goal, weight="distance")
            display(pd.DataFrame(
                {
                    "file": [G.nodes[f]["name"] for f in route],
                    "commits shared with the next": [cochange[a][b]["weight"] for a, b in zip(route, route[1:])] + [None],
                }
            ))

            strong = nx.Graph([(a, b, d) for a, b, d in cochange.edges(data=True) if d["weight"] > 1])
            strong.add_edges_from(zip(route, route[1:]))
            strong = strong.subgraph(nx.node_connected_component(strong, start))  # the part the path runs through
            layout = nx.kamada_kawai_layout(strong)
            fig, ax = plt.subplots(figsize=(12, 6))
            nx.draw_networkx_edges(
                strong, layout, ax=ax, alpha=0.3, width=[cochange[a][b]["weight"] for a, b in strong.edges]
            )
            nx.draw_networkx_edges(strong, layout, edgelist=list(zip(route, route[1:])), ax=ax, width=3, edge_color="#D55E00")
            nx.draw_networkx_nodes(strong, layout, ax=ax, node_size=25, node_color="#CC79A7")
            nx.draw_networkx_nodes(strong, layout, nodelist=route, ax=ax, node_size=80, node_color="#D55E00")
            nx.draw_networkx_labels(
                strong, layout, ax=ax, font_size=7,
                labels={f: G.nodes[f]["name"].rsplit("/", 1)[-1] for f in strong if f in route or strong.degree(f) >= 4},
            )
            ax.set_title("files changed together in more than one commit (width: commits); the weighted path in red")
            ax.axis("off")
            fig.tight_layout()
            plt.show()
        """
    ),
    code(
        r"""
        engine.close()
        shutil.rmtree(DATA_DIR, ignore_errors=True)
        """
    ),
]

NOTEBOOKS: dict[str, list[Cell]] = {
    "01_tour.ipynb": TOUR,
    "02_agent_memory.ipynb": MEMORY,
    "03_graph_analytics.ipynb": ANALYTICS,
}


def build(name: str) -> NotebookNode:
    """One notebook, without outputs, with cell ids derived from its name (stable across builds)."""
    stem = name.removesuffix(".ipynb").replace("_", "-")
    cells = []
    for i, (kind, source) in enumerate(NOTEBOOKS[name]):
        cell = nbformat.v4.new_markdown_cell(source) if kind == "md" else nbformat.v4.new_code_cell(source)
        cell["id"] = f"{stem}-{i:02d}"
        cells.append(cell)
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    nbformat.validate(notebook)
    return notebook


def render(name: str) -> str:
    return nbformat.writes(build(name))


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name in NOTEBOOKS:
        path = HERE / name
        text = render(name)
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if check:
            stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print(f"out of date (run python notebooks/build.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
