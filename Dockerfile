# The service image: `docker build -t token-grades .`, or `docker compose up` for a three-replica cluster.

# Build: every dependency (TypeScript included), then compile src/ and workers/ to dist/.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY workers ./workers
RUN npm run build

# Production dependencies only, installed apart so no build tool reaches the final image.
FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    HOST=0.0.0.0
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
# The grades outbox directory belongs to the service's user, so a volume mounted there starts writable by it.
RUN mkdir -p /data/grades-outbox && chown node:node /data/grades-outbox
# The image's own unprivileged user; nothing in /app is writable by it.
USER node
EXPOSE 8080 8081 8082
# node's own fetch: the slim image has no curl, and none is needed.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.TOKENS_PORT || 8080) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# node directly (not npm), so SIGTERM reaches the service and shutdown runs in order.
CMD ["node", "dist/src/main.js"]
