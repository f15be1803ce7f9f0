// The official `openai` npm package against the fleet's gateway: a streamed chat completion
// and embeddings (as numbers, and as base64 that the package decodes itself), printed as one
// JSON object for tests/integration/test_gateway.py to check.
// usage: FLEET_NODE_PACKAGES=DIR OPENAI_BASE_URL=URL OPENAI_API_KEY=KEY
//        node openai_clients.mjs CHAT_MODEL EMBED_MODEL
import { createRequire } from "node:module";

// The packages live under .fleet (deploy/local/node-clients.sh), not beside this file.
const require = createRequire(`${process.env.FLEET_NODE_PACKAGES}/`);
const { OpenAI } = require("openai");

const [chatModel, embedModel] = process.argv.slice(2);
const client = new OpenAI({ maxRetries: 0 }); // OPENAI_BASE_URL and OPENAI_API_KEY

const stream = await client.chat.completions.create({
  model: chatModel,
  messages: [{ role: "user", content: "Hi" }],
  stream: true,
  stream_options: { include_usage: true },
});
const chunks = [];
for await (const chunk of stream) chunks.push(chunk);

const texts = ["a red fox", "a quick brown dog"];
const floats = await client.embeddings.create({
  model: embedModel, input: texts, encoding_format: "float",
});
const packed = await client.embeddings.create({ model: embedModel, input: texts });

console.log(JSON.stringify({
  version: require("openai/version").VERSION,
  chunks,
  floats: floats.data.map((e) => e.embedding),
  packed: packed.data.map((e) => e.embedding),
  usage: floats.usage,
}));
