/** Version of Packetwatch, announced by the services and shown by the CLI. */
export const VERSION = '0.1.0';
