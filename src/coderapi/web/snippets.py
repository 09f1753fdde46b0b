"""The documented client examples, adapted to this server's base URL and models."""

from __future__ import annotations

DOCUMENTED_MODEL = "Qwen/Qwen2.5-Coder-32B-Instruct"
KEY_PLACEHOLDER = "<YOUR_API_KEY>"


def example_model(model_ids: list[str]) -> str:
    return DOCUMENTED_MODEL if DOCUMENTED_MODEL in model_ids or not model_ids else model_ids[0]


def examples(base_url: str, model: str) -> list[dict]:
    """[{id, label, language, code}] for the docs page and the overview's quick start."""
    return [
        {"id": "openai", "label": "Python (openai)", "language": "python", "code": _openai(base_url, model)},
        {"id": "requests", "label": "Python (requests)", "language": "python", "code": _requests(base_url, model)},
        {"id": "curl", "label": "curl", "language": "shell", "code": _curl(base_url, model)},
        {"id": "js", "label": "JavaScript", "language": "javascript", "code": _js(base_url, model)},
    ]


def _openai(base: str, model: str) -> str:
    return f'''from openai import OpenAI

client = OpenAI(base_url="{base}/v1", api_key="{KEY_PLACEHOLDER}")

response = client.chat.completions.create(
    model="{model}",
    messages=[{{"role": "user", "content": "Write a Python function that reverses a string."}}],
)
print(response.choices[0].message.content)
'''


def _requests(base: str, model: str) -> str:
    return f'''import requests

response = requests.post(
    "{base}/v1/chat/completions",
    headers={{
        "Content-Type": "application/json",
        "Authorization": "Bearer {KEY_PLACEHOLDER}",
    }},
    json={{
        "model": "{model}",
        "messages": [
            {{
                "role": "user",
                "content": "Hello"
            }}
        ],
    }},
)

data = response.json()
print(data)
'''


def _curl(base: str, model: str) -> str:
    return f'''curl -L \\
  --request POST \\
  --url '{base}/v1/chat/completions' \\
  --header 'Authorization: Bearer {KEY_PLACEHOLDER}' \\
  --header 'Content-Type: application/json' \\
  --data '{{
    "model": "{model}",
    "messages": [
      {{
        "role": "user",
        "content": "hi"
      }}
    ]
  }}'
'''


def _js(base: str, model: str) -> str:
    return f'''async function main() {{
  const response = await fetch('{base}/v1/chat/completions', {{
    method: 'POST',
    headers: {{
      'Authorization': 'Bearer {KEY_PLACEHOLDER}',
      'Content-Type': 'application/json',
    }},
    body: JSON.stringify({{
      model: '{model}',
      messages: [{{ role: 'user', content: 'Hello' }}],
    }}),
  }});

  const data = await response.json();
  console.log(JSON.stringify(data, null, 2));
}}

main();
'''
