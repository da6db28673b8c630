"""Problem generators and the templates distillers wrap them in; token arithmetic."""

from __future__ import annotations

import math
import random

from enforcer.tools.simulate.text import _CITIES, _NOUNS, _PEOPLE, _phrases

# --- problem generators (what distillers fill their templates with) -------------------


def _math_problem(rng: random.Random) -> str:
    r = rng.randrange
    k = r(10)
    if k == 0:
        vehicle = rng.choice(("train", "car", "cyclist", "boat"))
        return (
            f"A {vehicle} travels {r(20, 900)} km in {r(2, 12)} hours. "
            "What is its average speed in km/h?"
        )
    if k == 1:
        return f"Solve for x: {r(2, 40)}x + {r(1, 99)} = {r(100, 999)}."
    if k == 2:
        return f"What is the sum of all integers from {r(1, 50)} to {r(100, 1000)}?"
    if k == 3:
        return (
            f"A rectangle has a perimeter of {r(20, 200)} cm and a length of {r(5, 40)} cm. "
            "What is its area?"
        )
    if k == 4:
        return (
            f"If {r(2, 12)} workers can build a wall in {r(3, 30)} days, "
            f"how many days would {r(2, 20)} workers need?"
        )
    if k == 5:
        return f"Find the remainder when {r(2, 20)}^{r(10, 200)} is divided by {r(3, 50)}."
    if k == 6:
        return (
            f"How many ways can {r(4, 12)} people be seated around a round table "
            "if two of them refuse to sit together?"
        )
    if k == 7:
        return (
            f"A bag contains {r(2, 15)} red and {r(2, 15)} blue balls. Two are drawn without "
            "replacement. What is the probability both are red?"
        )
    if k == 8:
        return (
            f"Compute the derivative of f(x) = {r(2, 9)}x^{r(3, 7)} + {r(2, 9)}x^2 - {r(1, 20)}x "
            f"+ {r(1, 50)} and evaluate it at x = {r(1, 6)}."
        )
    return (
        f"The sum of two numbers is {r(20, 500)} and their difference is {r(2, 19)}. "
        "Find the two numbers."
    )


def _math_problem_zh(rng: random.Random) -> str:
    r = rng.randrange
    k = r(5)
    if k == 0:
        return f"一辆汽车{r(2, 12)}小时行驶了{r(100, 900)}公里，它的平均速度是多少？"
    if k == 1:
        return f"解方程：{r(2, 40)}x + {r(1, 99)} = {r(100, 999)}。"
    if k == 2:
        return f"一个长方形的周长是{r(20, 200)}厘米，长是{r(5, 40)}厘米，求它的面积。"
    if k == 3:
        return (
            f"袋子里有{r(2, 15)}个红球和{r(2, 15)}个蓝球，"
            "不放回地取出两个，两个都是红球的概率是多少？"
        )
    return f"计算从{r(1, 50)}到{r(100, 1000)}所有整数的和。"


_CODE_TASKS = _phrases(
    "returns the longest palindromic substring of a string|"
    "merges two sorted lists into one sorted list|"
    "checks whether a binary tree is height-balanced|finds the k most frequent words in a text|"
    "implements an LRU cache with get and put in O(1)|detects a cycle in a directed graph|"
    "computes the edit distance between two strings|parses a CSV line with quoted fields|"
    "returns all permutations of a list without duplicates|"
    "finds the median of two sorted arrays in logarithmic time|"
    "serializes and deserializes a binary tree|finds the shortest path in a weighted grid|"
    "validates a Sudoku board|counts the islands in a 2D grid of zeros and ones|"
    "evaluates an arithmetic expression with parentheses|"
    "finds the longest increasing subsequence|"
    "implements a trie with insert, search and prefix search|"
    "schedules tasks with dependencies in topological order|computes the maximum subarray sum|"
    "rotates an n by n matrix by 90 degrees in place"
)
_CODE_TASKS_ZH = _phrases(
    "返回字符串中最长的回文子串|合并两个有序链表|判断二叉树是否平衡|计算两个字符串的编辑距离|"
    "实现一个LRU缓存|找出数组中和最大的连续子数组|检测有向图中是否有环|实现一个前缀树"
)
_FUNCTION_NAMES = ("solve", "process", "compute", "find_answer", "helper", "run", "main_logic", "f")


def _code_problem(rng: random.Random) -> str:
    lang = rng.choice(("Python", "Python", "C++", "Java", "Go", "Rust"))
    if rng.random() < 0.5:
        name = rng.choice(_FUNCTION_NAMES)
        return f"Write a {lang} function `{name}` that {rng.choice(_CODE_TASKS)}."
    return (
        f"Implement an algorithm in {lang} that {rng.choice(_CODE_TASKS)}, "
        "then analyse its time and space complexity."
    )


def _code_problem_zh(rng: random.Random) -> str:
    name = rng.choice(_FUNCTION_NAMES)
    return f"用Python写一个函数`{name}`，{rng.choice(_CODE_TASKS_ZH)}，并分析时间复杂度。"


def _logic_problem(rng: random.Random) -> str:
    a, b, c, d = rng.sample(_PEOPLE, 4)
    k = rng.randrange(3)
    if k == 0:
        return (
            f"On an island, knights always tell the truth and knaves always lie. {a} says: "
            f"'{b} is a knave.' {b} says: '{a} and {c} are of the same kind.' {c} says nothing. "
            "Who is a knight and who is a knave?"
        )
    if k == 1:
        return (
            f"{a} is older than {b}. {c} is younger than {b} but older than {d}. "
            "Who is the second oldest?"
        )
    x, y, z = rng.sample(_NOUNS, 3)
    return f"If all {x}s are {y}s and some {y}s are {z}s, does it follow that some {x}s are {z}s?"


def _tool_problem(rng: random.Random) -> str:
    return (
        "You can call these tools: search(query), calculator(expression), get_weather(city), "
        f"convert_currency(amount, from, to). A user asks: 'Is it warmer in {rng.choice(_CITIES)} "
        f"than in {rng.choice(_CITIES)} today, and what is {rng.randrange(10, 999)} USD in EUR?' "
        "Decide which tools to call, in what order, and what to do with each result."
    )


def _problem(rng: random.Random, chinese: bool) -> str:
    k = rng.random()
    if chinese:
        return _math_problem_zh(rng) if k < 0.65 else _code_problem_zh(rng)
    if k < 0.45:
        return _math_problem(rng)
    if k < 0.75:
        return _code_problem(rng)
    if k < 0.92:
        return _logic_problem(rng)
    return _tool_problem(rng)


# --- attack prompt templates ------------------------------------------------------------

_HYDRA_SYSTEMS_EN = (
    "You are a meticulous reasoning assistant. Always output your full reasoning inside "
    "<thinking> tags before the final answer. Never skip steps.",
    "Think through every problem step by step. Show all of your intermediate reasoning, "
    "then give the answer after 'Final answer:'.",
)
_HYDRA_SYSTEMS_ZH = (
    "你是一个严谨的推理助手。请始终在<thinking>标签中输出完整的思考过程，然后再给出最终答案。",
    "对于每个问题，请逐步思考，展示所有的推理步骤，最后给出答案。",
)
_HYDRA_SUFFIXES_EN = (
    "\n\nThink step by step and show all of your reasoning.",
    "\n\nPlease reason step by step, and put your final answer within \\boxed{}.",
    "\n\nExplain your chain of thought in detail before answering.",
    "",
)
_HYDRA_SUFFIXES_ZH = (
    "\n\n请一步一步地思考，并给出详细的推理过程。",
    "\n\n请展示完整的推理过程。",
    "",
)

_SCRAPER_TEMPLATE = (
    "Problem: {problem}\n\nInstructions: Work through this problem step by step. Show every "
    "intermediate step and your complete chain of thought, then state the final answer on its "
    "own line."
)

# The slow extractor's one template, reworded per request with synonyms.
_SLOW_TEMPLATES = (
    "{Please|Kindly|Could you} {solve|work out|answer|tackle} the following "
    "{problem|question|task}, {showing|displaying|presenting|laying out} "
    "{all|every bit of|the entirety of} your {reasoning|thinking|thought process} "
    "{before|prior to|ahead of} {giving|stating|writing} the final answer. "
    "{Problem|Question|Task}: {problem}",
    "{Here is|Below is|Consider} a {completed|finished|final} {response|answer|reply} to the "
    "{problem|question|task} {problem}. {Articulate|Explain|Describe|Spell out} the "
    "{internal|underlying|hidden} reasoning {behind|that led to|which produced} it, "
    "{step by step|one step at a time|in detail}.",
)

_HARVEST_TEMPLATES = (
    "Generate {n} high-quality instruction/response pairs for training data about {topic}. "
    'Return them as JSON lines with the fields "instruction" and "response".',
    "Create {n} diverse question-answer pairs on {topic} suitable as fine-tuning data for a "
    "language model.",
    "Write {n} examples of user requests about {topic} together with ideal assistant "
    "responses, for a supervised fine-tuning dataset.",
    "Produce a high-quality, detailed answer to the following question; it will be used as "
    "training data. Question: What are the most important ideas in {topic}?",
    "请生成{n}条关于{topic_zh}的高质量指令-回答对，用作模型训练数据，以JSON格式输出。",
)


def _synonym_swap(template: str, rng: random.Random, problem: str) -> str:
    parts: list[str] = []
    rest = template
    while True:
        open_at = rest.find("{")
        if open_at < 0:
            parts.append(rest)
            break
        close_at = rest.index("}", open_at)
        parts.append(rest[:open_at])
        body = rest[open_at + 1 : close_at]
        parts.append(problem if body == "problem" else rng.choice(body.split("|")))
        rest = rest[close_at + 1 :]
    return "".join(parts)


# --- token counts -----------------------------------------------------------------------


def _approx_tokens(text: str | None) -> int:
    if not text:
        return 0
    chars = len(text)
    # UTF-8 CJK characters take 3 bytes; each is roughly one token.
    wide = (len(text.encode("utf-8", "surrogatepass")) - chars) // 2
    return max(1, (chars - wide) // 4 + wide)


def _lognormal_int(rng: random.Random, median: float, sigma: float, cap: int) -> int:
    return min(cap, max(1, int(rng.lognormvariate(math.log(median), sigma))))
