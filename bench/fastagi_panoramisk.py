"""panoramisk's FastAGI server (panoramisk.fast_agi.Application) running the bench script:
the same three SET VARIABLE commands pbxlink's [agi.static.bench] route sends, then close.
Prints "listening" on stdout once it accepts connections.
Usage: fastagi_panoramisk.py <port>
"""
import asyncio
import logging
import sys

from panoramisk.fast_agi import Application

COMMANDS = ['SET VARIABLE PBXLINK_A 1', 'SET VARIABLE PBXLINK_B 2', 'SET VARIABLE PBXLINK_C 3']


async def bench(request):
    for command in COMMANDS:
        await request.send_command(command)


async def main(port):
    # panoramisk logs every request at INFO; logging is not what is measured.
    logging.disable(logging.CRITICAL)
    app = Application()
    app.add_route('bench', bench)
    server = await asyncio.start_server(app.handler, '127.0.0.1', port, backlog=4096)
    print('listening', flush=True)
    async with server:
        await server.serve_forever()


if __name__ == '__main__':
    asyncio.run(main(int(sys.argv[1])))
