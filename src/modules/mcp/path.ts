/** Where the Model Context Protocol endpoint listens (outside /v1: it is its own protocol). */
export const MCP_PATH = '/mcp';
